"""Inputs the libraries underneath cannot take are refused in one line naming the field or option (exit 2),
before anything runs: integers beyond torch's, NumPy's or SQLite's range, counts that would build giant
lists, non-finite targets and model options, empty paths. Each bound is also checked against the library."""

import math
import re
import sqlite3
import sys

import pytest
import torch

import reglab
from reglab.cli.app import main
from reglab.config import GENERATOR_SEED_LIMIT, MAX_THREADS, SEED_LIMIT, ConfigError, RunConfig
from reglab.data.registry import get_dataset_info, validated_options
from reglab.models import build_model
from reglab.models.common import MAX_SIZE
from reglab.study.spec import MAX_SEEDS, StudySpec
from reglab.study.sweep import MAX_VALUES, parse_param
from reglab.study.target import parse_target
from reglab.theory.analyze import MAX_POINTS, analyze_run

HUGE = "99999999999999999999"  # > 2**64
TINY = """
name = "tiny"
seeds = 2
[base]
data = { name = "fn1d" }
model.options.widths = [4]
train = { epochs = 1, batch_size = 0, loss = "mse", device = "cpu" }
[arms.base]
[arms.l2]
regularize.l2 = 0.001
"""
TRAIN = ["train", "--dataset", "mnist1d", "--model", "mlp", "--epochs", "1", "--device", "cpu",
         "--set", "data.train_subset=64", "--set", "data.test_subset=64", "--set", "model.options.widths=[4]"]
TEACHER = ["train", "--dataset", "teacher-student", "--model", "mlp", "--epochs", "1", "--device", "cpu",
           "--set", "train.loss=mse", "--set", "data.options.n_train=8", "--set", "data.options.n_test=8"]

# (argv, a string the one-line error must contain); FILE, TOML, SEEDS, NAN and RUN are in the working dir
BAD_INPUTS = [
    ([*TRAIN, "--seed", HUGE], "seed: Input should be less than 9223372036854775808"),
    ([*TRAIN, "--set", "data.val_split=0.1", "--set", f"data.split_seed={HUGE}"], "data.split_seed: Input should be"),
    ([*TRAIN, "--set", f"model.options.widths=[{HUGE}]"], "model.options.widths: Input should be less than or equal"),
    ([*TRAIN, "--set", "model.options.init_scale=nan"], "model.options.init_scale: Input should be a finite number"),
    ([*TRAIN, "--set", "model.options.init_scale=-inf"], "model.options.init_scale: Input should be a finite number"),
    ([*TRAIN, "--set", "train.threads=100000"], "train.threads: Input should be less than or equal to 1024"),
    ([*TRAIN, "--set", "data.data_dir=''"], "data.data_dir: '' is an empty path"),
    ([*TEACHER, "--set", f"data.options.teacher_seed={HUGE}"], "data.options.teacher_seed: Input should be less"),
    ([*TEACHER, "--set", f"data.options.d={HUGE}"], "data.options.d: Input should be less than 2147483648"),
    ([*TEACHER, "--set", "data.options.noise=inf"], "data.options.noise: Input should be a finite number"),
    (["datasets", "--data-dir", "/nonexistent"], "--data-dir: '/nonexistent' is not a directory"),
    (["datasets", "--data-dir", "FILE"], "--data-dir: 'FILE' is not a directory"),
    (["datasets", "--data-dir", ""], "'--data-dir': '' is an empty path"),
    ([*TRAIN, "--out", ""], "'--out': '' is an empty path"),
    ([*TRAIN, "--data-dir", ""], "'--data-dir': '' is an empty path"),
    (["compare", "quickstart", "--out", ""], "'--out': '' is an empty path"),
    (["report", ""], "'study_dir': '' is an empty path"),
    (["compare", "TOML", "--seeds", "100000000000"], "seeds: at most 10000 seeds (got 100000000000)"),
    (["compare", "SEEDS"], f"seeds: seed {HUGE} is too large"),
    (["compare", "NAN"], "statistics.target.test_loss: Input should be a finite number (got nan)"),
    (["compare", "TOML", "--target", "test_loss=nan"], "--target 'test_loss=nan': the target must be a finite"),
    (["compare", "TOML", "--target", "test_loss=-inf"], "--target 'test_loss=-inf': the target must be a finite"),
    (["tune", "TOML", "--param", "dropout=0:0.5:100000000000"], "the number of values must be at most 10000"),
    (["sweep", "TOML", "--param", "l2=log:1e-5:1e-2:100000000000"], "the number of values must be at most 10000"),
    (["analyze", "RUN", "--seed", HUGE], f"--seed: need at most {2**64 - 1} (got {HUGE})"),
    (["analyze", "RUN", "--seed", "-1"], "--seed: need at least 0 (got -1)"),
    (["analyze", "RUN", "--points", HUGE], f"--points: need at most 1001 (got {HUGE})"),
    (["analyze", "RUN", "--trace-samples", "0"], "--trace-samples: need at least 2 (got 0)"),
    (["analyze", "RUN", "--top-k", "0"], "--top-k: need at least 1 (got 0)"),
    (["analyze", "RUN", "--hessian", "--top-k", "1000"], "top_k: 1000 eigenvalues asked of a Hessian of dimension"),
    (["analyze", ""], "'run': '' is an empty path"),
    (["analyze", "RUN", "--out", ""], "'--out': '' is an empty path"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 4-epoch run of a 13-parameter network on fn1d (for `reglab analyze`)."""
    path = tmp_path_factory.mktemp("run")
    reglab.train_run(RunConfig.from_dict({"data": {"name": "fn1d"}, "model": {"options": {"widths": [4]}},
                                          "train": {"epochs": 1, "batch_size": 0, "loss": "mse", "device": "cpu"}}),
                     run_dir=path)
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch, trained):
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("not a directory")
    (tmp_path / "TOML").write_text(TINY)
    (tmp_path / "SEEDS").write_text(TINY.replace("seeds = 2", f"seeds = [{HUGE}]"))
    (tmp_path / "NAN").write_text(TINY.replace("[arms.base]", "[statistics]\ntarget = { test_loss = nan }\n"
                                                               "[arms.base]"))
    shutil.copytree(trained, tmp_path / "RUN")
    return tmp_path


def listing(path):
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


@pytest.mark.parametrize(("argv", "named"), BAD_INPUTS, ids=[" ".join(a[-2:])[:40] for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, named, workdir, monkeypatch, capsys):
    before = listing(workdir)
    monkeypatch.setattr(sys, "argv", ["reglab", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert listing(workdir) == before


# ---------------------------------------------------------------------------------- the bounds themselves
def test_seed_bounds_are_what_torch_and_sqlite_take():
    torch.manual_seed(SEED_LIMIT - 1)
    torch.Generator().manual_seed(GENERATOR_SEED_LIMIT - 1)
    with pytest.raises((ValueError, OverflowError, RuntimeError)):
        torch.Generator().manual_seed(GENERATOR_SEED_LIMIT)
    sqlite3.connect(":memory:").execute("SELECT ?", (SEED_LIMIT - 1,))
    with pytest.raises(OverflowError):
        sqlite3.connect(":memory:").execute("SELECT ?", (SEED_LIMIT,))
    assert RunConfig.from_dict({"seed": SEED_LIMIT - 1, "data": {"split_seed": GENERATOR_SEED_LIMIT - 1}})
    with pytest.raises(ConfigError, match="^seed: "):
        RunConfig.from_dict({"seed": SEED_LIMIT})
    with pytest.raises(ConfigError, match="^data.split_seed: "):
        RunConfig.from_dict({"data": {"split_seed": GENERATOR_SEED_LIMIT}})


def test_threads_and_empty_data_dir():
    assert RunConfig.from_dict({"train": {"threads": MAX_THREADS}}).train.threads == MAX_THREADS
    with pytest.raises(ConfigError, match=r"^train.threads: .* \(got 1025\)"):
        RunConfig.from_dict({"train": {"threads": MAX_THREADS + 1}})
    with pytest.raises(ConfigError, match="^data.data_dir: '' is an empty path"):
        RunConfig.from_dict({"data": {"data_dir": ""}})
    assert str(RunConfig.from_dict({"data": {"data_dir": "."}}).data.data_dir) == "."


def test_study_seeds_are_counted_and_bounded():
    spec = {"name": "s", "base": {"data": {"name": "fn1d"}, "train": {"loss": "mse"}}, "arms": {"a": {}}}
    assert StudySpec.from_dict({**spec, "seeds": MAX_SEEDS}).seed_list[-1] == MAX_SEEDS - 1
    assert StudySpec.from_dict({**spec, "seeds": [SEED_LIMIT - 1]}).seed_list == [SEED_LIMIT - 1]
    for seeds, message in ((MAX_SEEDS + 1, "at most 10000 seeds"), (list(range(MAX_SEEDS + 1)), "at most 10000"),
                           ([SEED_LIMIT], "is too large"), ([0, -1], "distinct non-negative")):
        with pytest.raises(ConfigError, match=f"^seeds: .*{message}"):
            StudySpec.from_dict({**spec, "seeds": seeds})
    for target in (math.nan, math.inf, -math.inf):
        with pytest.raises(ConfigError, match="^statistics.target.test_loss: Input should be a finite number"):
            StudySpec.from_dict({**spec, "statistics": {"target": {"test_loss": target}}})


def test_param_ranges_and_targets():
    assert len(parse_param(f"dropout=0:0.5:{MAX_VALUES}").values) == MAX_VALUES
    with pytest.raises(ConfigError, match=r"^--param 'dropout=0:0.5:10001': the number of values must be at most"):
        parse_param(f"dropout=0:0.5:{MAX_VALUES + 1}")
    assert parse_target("test_acc=0.9") == {"test_acc": 0.9}
    for value in ("nan", "inf", "-inf", "1e400", str(10**400)):
        with pytest.raises(ConfigError, match=re.escape(f"--target 'test_acc={value}': the target must be")):
            parse_target(f"test_acc={value}")


def test_model_options_sizes_and_finite_floats():
    cfg, reg = RunConfig(), RunConfig().regularize

    def build(name: str, shape: tuple[int, ...], **options):
        with torch.device("meta"):
            return build_model(cfg.model.model_copy(update={"name": name, "options": options}), input_shape=shape,
                               num_outputs=2, reg=reg)

    assert build("mlp", (3,), widths=[MAX_SIZE]) is not None  # on the meta device: no memory
    cases = [("mlp", (3,), {"widths": [MAX_SIZE + 1]}, "widths: Input should be less than or equal to 2147483647"),
             ("mlp", (3,), {"init_scale": math.nan}, "init_scale: Input should be a finite number"),
             ("mlp", (3,), {"init_gamma": math.inf, "init": "normal"}, "init_gamma: Input should be a finite"),
             ("resmlp", (3,), {"blocks": 2**63}, "blocks: Input should be less than or equal"),
             ("resmlp", (3,), {"width": 2**20, "expansion": 2**20}, "expansion: a layer of 1048576 × 1048576"),
             ("transformer", (5,), {"mlp_ratio": 1e308}, "mlp_ratio: a layer of 64 × 1e+308 units exceeds"),
             ("transformer", (5,), {"mlp_ratio": math.nan}, "mlp_ratio: Input should be a finite number"),
             ("vgg9", (1, 8, 8), {"width": 1e30}, "width: a layer of 32 × 1e+30 units exceeds 2147483647"),
             ("resnet20", (1, 8, 8), {"width": math.inf}, "width: Input should be a finite number"),
             ("deeper_cnn", (1, 8, 8), {"fc_widths": [2**64]}, "fc_widths: Input should be less than or equal")]
    for name, shape, options, message in cases:
        with pytest.raises(ConfigError, match="^model.options." + re.escape(message)):
            build(name, shape, **options)


def test_synthetic_data_options():
    info = get_dataset_info("teacher-student")
    assert validated_options(info, {"teacher_seed": GENERATOR_SEED_LIMIT - 1}) == {
        "teacher_seed": GENERATOR_SEED_LIMIT - 1}
    for options, message in (({"teacher_seed": GENERATOR_SEED_LIMIT}, "teacher_seed: Input should be less than"),
                             ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
                             ({"n_train": 2**31}, "n_train: Input should be less than 2147483648"),
                             ({"noise": math.nan}, "noise: Input should be a finite number")):
        with pytest.raises(ConfigError, match="^data.options." + re.escape(message)):
            validated_options(info, options)
    fn1d = get_dataset_info("fn1d")
    for options, message in (({"x_min": -math.inf}, "x_min: Input should be a finite number"),
                             ({"points": [[0.0, math.nan]]}, "points: Input should be a finite number"),
                             ({"seed": 2**64}, "seed: Input should be less than")):
        with pytest.raises(ConfigError, match="^data.options." + re.escape(message)):
            validated_options(fn1d, options)


def test_crop_padding_wider_than_the_images_is_refused(tmp_path):
    from conftest import fake_cifar10
    from reglab.data.prepare import load_dataset

    fake_cifar10(tmp_path, per_file=2)
    data = {"name": "cifar10", "data_dir": str(tmp_path), "augment": {"crop_padding": 32}}
    assert load_dataset(RunConfig.from_dict({"data": data}).data).x_train.shape[-2:] == (32, 32)
    data["augment"]["crop_padding"] = 10**20  # torch.nn.functional.pad: "Overflow when unpacking long long"
    with pytest.raises(ConfigError, match=r"^data.augment.crop_padding: 100000000000000000000 exceeds the 32×32"):
        load_dataset(RunConfig.from_dict({"data": data}).data)


def test_analyze_run_checks_its_library_arguments(trained, tmp_path):
    out = tmp_path / "analysis"
    for kwargs, message in (({"landscape": "1d", "points": MAX_POINTS + 1}, "points: need at most 1001"),
                            ({"landscape": "1d", "points": 1}, "points: need at least 2"),
                            ({"hessian": True, "seed": 2**64}, "seed: need 0 to 2**64 - 1"),
                            ({"hessian": True, "top_k": 14}, "top_k: 14 eigenvalues asked of a Hessian of "
                                                              "dimension 13")):
        with pytest.raises(ConfigError, match="^" + re.escape(message)):
            analyze_run(trained, out=out, **kwargs)
    assert not out.exists()


def test_a_grid_or_a_trial_budget_beyond_the_search_limit_is_refused():
    from reglab.study.sweep import parse_param
    from reglab.study.tune import MAX_GRID, TuneSettings

    params = [parse_param("dropout=0:0.5:200"), parse_param("lr=log:1e-4:1e-1:100")]  # 20,000 points
    with pytest.raises(ConfigError, match=r"--param: a grid of 20000 points \(at most 10000\)"):
        TuneSettings(params, sampler="grid")
    assert TuneSettings(params, sampler="tpe").n_trials == 20  # drawn, not enumerated
    with pytest.raises(ConfigError, match=f"--trials: at most {MAX_GRID}"):
        TuneSettings(params, sampler="random", trials=MAX_GRID + 1)


def test_the_analysis_seed_of_a_study_stays_below_what_its_sum_with_a_run_seed_may_reach():
    from reglab.study.analysis import AnalysisSpec

    with pytest.raises(ValueError, match="seed"):
        AnalysisSpec(landscape="1d", seed=2**63)
    assert AnalysisSpec(landscape="1d", seed=2**63 - 1).seed + (2**63 - 1) < 2**64  # torch.Generator takes it


@pytest.mark.parametrize(("field", "bad", "good"), [
    ("optim.momentum", 1.0, 0.999),  # β = 1 never forgets a gradient: the momentum buffer grows without bound
    ("optim.schedule.gamma", 0.0, 1e-3),  # γ = 0 sets the lr to 0 at the first decay
])
def test_open_bounds_of_optimizer_fields(field, bad, good):
    """Open ends: momentum < 1 and a decay factor γ > 0."""
    RunConfig.from_dict({}).override({field: good})
    with pytest.raises(ConfigError, match=field.rsplit(".", 1)[-1]):
        RunConfig.from_dict({}).override({field: bad})
