"""`reglab compare`, `tune` and `export` at the command line: options refused in one line naming them
(nothing written; missing data too), `--set` overrides every arm (compare) and the searched base (sweep), a search whose
runs failed exits 1, and `export --table T` writes STUDY/T.csv."""

import json

import pandas as pd
import pytest

from conftest import TINY_STUDY as TINY
from conftest import run_cli
from reglab.study import LocalExecutor, StudySpec, run_study

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.mark.parametrize(("argv", "named"), [
    (["compare", "TOML", "--correction", "bonferroni", "--out", "s"], "--correction"),
    (["compare", "TOML", "--baseline", "l3", "--out", "s"], "--baseline: 'l3' is not an arm of tiny (arms: base, l2)"),
    (["compare", "TOML", "--set", "data.train_subset=9000", "--out", "s"],  # checked against the data, once
     "arms.base.data.train_subset: 9000 exceeds the 4000 train samples of mnist1d"),
    (["compare", "TOML", "--set", "data.augment.flip=true", "--out", "s"], "arms.base.data.augment.flip: needs images"),
    (["compare", "TOML", "--executor", "ray", "--pack", "2", "--out", "s"], "packing needs --executor local"),
])
def test_compare_options_are_refused_naming_the_option(argv, named, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "TOML").write_text(TINY)
    code, _, err = run_cli(monkeypatch, capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and named in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["TOML"]


def test_compare_set_overrides_every_arm_and_bad_assignments_are_refused_naming_set(tmp_path, monkeypatch, capsys):
    """``--set KEY=VALUE`` reaches the base and an arm that sets KEY itself (as ``--epochs`` does)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "TOML").write_text(TINY + "train.batch_size = 16\n")  # the l2 arm's own batch size
    for argv, named in ((["--set", "train.compil=true"], "--set: base.train.compil: Extra inputs"),
                        (["--set", "compile"], "--set 'compile': expected KEY=VALUE")):
        code, _, err = run_cli(monkeypatch, capsys, "compare", "TOML", "--out", "s", *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and named in err, err
    assert not (tmp_path / "s").exists()
    code, _, err = run_cli(monkeypatch, capsys, "compare", "TOML", "--out", "s", "--workers", "1",
                           "--set", "train.batch_size=32", "--set", "train.compile=true")
    assert code == 0, err
    configs = [json.loads(p.read_text()) for p in sorted((tmp_path / "s" / "runs").glob("*/config.json"))]
    assert len(configs) == 4 and all(c["train"]["batch_size"] == 32 and c["train"]["compile"] for c in configs)
    assert sorted(c["regularize"]["l2"] for c in configs) == [0.0, 0.0, 0.001, 0.001]  # the arms stay themselves


def test_a_study_whose_data_is_not_here_is_refused_before_any_run(tmp_path, monkeypatch, capsys):
    """Not a failed run per run: one line naming the field and the command that gets the data."""
    from reglab.cli.options import check_data
    from reglab.config import RunConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "TOML").write_text(TINY.replace('name = "mnist1d"', 'name = "mnist"'))
    for argv, field in ((["compare", "TOML", "--out", "s"], "arms.base.data.name"),
                        (["sweep", "TOML", "--param", "dropout=0,0.1", "--out", "s"], "data.name")):
        code, _, err = run_cli(monkeypatch, capsys, *argv)
        said = f"error: {field}: 'mnist' is not on this machine; `reglab data fetch mnist` gets it (or set " \
               "data.download=true)"
        assert code == 2 and err.strip().splitlines() == [said], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["TOML"]
    check_data(RunConfig.from_dict({"data": {"name": "mnist", "download": True}}))  # it may fetch the files: ok


def test_sweep_set_overrides_the_searched_base(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "TOML").write_text(TINY)
    code, _, err = run_cli(monkeypatch, capsys, "sweep", "TOML", "--param", "dropout=0,0.1", "--seeds", "1",
                           "--out", "s", "--workers", "1", "--set", "train.batch_size=32")
    assert code == 0, err
    configs = [json.loads(p.read_text()) for p in sorted((tmp_path / "s" / "runs").glob("*/config.json"))]
    searched = sorted((c["train"]["batch_size"], c["regularize"]["dropout"]["p"]) for c in configs)
    assert searched == [(32, 0.0), (32, 0.1)]


def test_a_search_whose_runs_all_failed_exits_1(tmp_path, monkeypatch, capsys):
    pytest.importorskip("optuna")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FAIL").write_text(TINY.replace("train_subset = 128", "train_subset = 1, val_split = 0.5"))
    monkeypatch.setattr("reglab.cli.options.fits_data", lambda data_json: None)  # let the runs fail, one by one
    code, _, err = run_cli(monkeypatch, capsys, "tune", "FAIL", "--param", "dropout=0,0.1", "--sampler", "grid",
                           "--workers", "1", "--out", "t")
    assert code == 1, err
    assert "internal error" not in err and "failed: ConfigError: data.val_split" in err
    assert "note: --metric test_acc chooses on the test set" in err  # the default metric


def test_export_writes_the_chosen_table_to_its_own_file_by_default(tmp_path, monkeypatch, capsys):
    study = tmp_path / "study"
    run_study(StudySpec.from_dict({"name": "t", "seeds": 1, "base": {
        "data": {"name": "mnist1d", "train_subset": 128, "test_subset": 128},
        "model": {"name": "mlp", "options": {"widths": [8]}},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 64}}, "arms": {"a": {}}}),
        study, executor=LocalExecutor(workers=1), progress=False)
    for table, rows in (("epochs", 2), ("runs", 1)):
        code, out, err = run_cli(monkeypatch, capsys, "export", str(study), "--table", table)
        assert code == 0, err
        assert out.strip() == str(study / f"{table}.csv")
        assert len(pd.read_csv(study / f"{table}.csv")) == rows  # one row per epoch, one per run


def test_the_baseline_is_chosen_again_without_rerunning_anything(tmp_path, monkeypatch, capsys):
    """The baseline is how a study is compared, not what it trains: `reglab report --baseline` compares with
    another arm (each arm's Δ is the other way round), and a spec that names another baseline resumes
    without --force, training nothing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "TOML").write_text(TINY)
    code, _, err = run_cli(monkeypatch, capsys, "compare", "TOML", "--out", "s", "--workers", "1")
    assert code == 0, err
    before = pd.read_csv(tmp_path / "s" / "report" / "summary.csv").set_index(["metric", "arm"])
    code, _, err = run_cli(monkeypatch, capsys, "report", "s", "--baseline", "l2")
    assert code == 0, err
    after = pd.read_csv(tmp_path / "s" / "report" / "summary.csv").set_index(["metric", "arm"])
    assert after.loc[("final_test_acc", "l2"), "verdict"] == "baseline"
    assert after.loc[("final_test_acc", "base"), "diff"] == pytest.approx(-before.loc[("final_test_acc", "l2"), "diff"])
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "s" / "runs").glob("*/metrics.jsonl")}
    (tmp_path / "TOML").write_text(TINY.replace('name = "tiny"', 'name = "tiny"\nbaseline = "l2"\n'
                                                'description = "l2 first"'))
    code, _, err = run_cli(monkeypatch, capsys, "compare", "TOML", "--out", "s", "--workers", "1")
    assert code == 0 and "running 0 runs" in err, err
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert pd.read_csv(tmp_path / "s" / "report" / "summary.csv").set_index(["metric", "arm"]).loc[
        ("final_test_acc", "l2"), "verdict"] == "baseline"
