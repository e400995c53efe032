"""`reglab tune`: settings, search space, a real search over seeds on MNIST-1D, pruning, the best
configuration as a compare arm, and resuming after SIGKILL without training a finished cell twice."""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import FailEverything

optuna = pytest.importorskip("optuna")

from reglab.cli import app  # noqa: E402
from reglab.config import ConfigError  # noqa: E402
from reglab.report import write_report  # noqa: E402
from reglab.study import StudySpec, load_study, run_study  # noqa: E402
from reglab.study.sweep import parse_param  # noqa: E402
from reglab.study.tune import TuneSettings, add_best_arm, arm_name, grid_points, run_tune, suggest  # noqa: E402

BASE = {"data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
        "model": {"name": "mlp", "options": {"widths": [16]}}, "optim": {"name": "momentum", "lr": 0.05},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 128}}
SPEC = StudySpec.from_dict({"name": "tiny", "seeds": 2, "base": BASE, "arms": {"base": {}}})


def test_settings_are_validated_in_one_line():
    dropout = parse_param("dropout=0:0.5:3")
    for kwargs, message in (({"sampler": "bayes"}, "--sampler: unknown 'bayes'"),
                            ({"pruner": "hb"}, "--pruner: unknown 'hb'"),
                            ({"objective": "median"}, "--objective: unknown 'median'"),
                            ({"trials": 0}, "--trials: needs at least 1"),
                            ({"seed": -1}, r"--sampler-seed: must lie in \[0, 2\*\*32\) \(got -1\)"),
                            ({"seed": 2**32}, "--sampler-seed: must lie in")):
        with pytest.raises(ConfigError, match=message):
            TuneSettings([dropout], **kwargs)
    with pytest.raises(ConfigError, match=r"--metric: unknown 'foo' \(choose from ") as err:
        TuneSettings([dropout], metric="foo")
    listed = str(err.value).split("choose from ")[1].rstrip(")").split(", ")
    assert set(listed) == {f"{split}_{kind}" for split in ("train", "train_eval", "val", "test")
                           for kind in ("loss", "acc")}
    for metric in listed:
        assert TuneSettings([dropout], metric=metric).metric == metric
    with pytest.raises(ConfigError, match="searched twice"):
        TuneSettings([parse_param("wd=0.1"), parse_param("weight_decay=0.2")])
    assert TuneSettings([dropout, parse_param("lr=0.1,0.2")], sampler="grid").n_trials == 6
    assert TuneSettings([dropout], metric="test_loss").direction == "minimize"


def test_search_space_ranges_lists_and_grid():
    params = [parse_param("dropout=0:0.5:3"), parse_param("l2=log:1e-5:1e-2:4"), parse_param("optim.name=sgd,adamw"),
              parse_param("train.epochs=2:6:3")]
    assert [arm_name(p) for p in grid_points(params[:2])][:3] == ["dropout=0.0,l2=1e-05", "dropout=0.0,l2=0.0001",
                                                                 "dropout=0.0,l2=0.001"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        point = suggest(study.ask(), TuneSettings(params, sampler="random"))
        assert 0 <= point["dropout"] <= 0.5 and 1e-5 <= point["l2"] <= 1e-2
        assert point["optim.name"] in ("sgd", "adamw") and isinstance(point["train.epochs"], int)
        assert float(f"{point['dropout']:.3g}") == point["dropout"]  # readable arm names
    grid = suggest(optuna.trial.FixedTrial({"dropout": 0.25}), TuneSettings(params[:1], sampler="grid"))
    assert grid == {"dropout": 0.25}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    settings = TuneSettings([parse_param("dropout=0:0.5:3"), parse_param("lr=log:0.01:0.3:3")], sampler="tpe",
                            trials=3, seed=1)
    return out, run_tune(SPEC, settings, out, progress=False)


def test_a_trial_is_a_configuration_over_every_seed(searched):
    out, result = searched
    runs, trials = result.study.runs, result.trials
    assert len(trials) == 3 and (trials["state"] == "complete").all() and (trials["n"] == 2).all()
    for _, t in trials.iterrows():
        finals = runs.loc[runs["arm"] == t["arm"], "final_test_acc"]
        assert sorted(runs.loc[runs["arm"] == t["arm"], "seed"]) == [0, 1]
        assert t["value"] == pytest.approx(finals.mean()) and t["ci_low"] < t["mean"] < t["ci_high"]
    assert result.best["value"] == trials["value"].max()
    assert len(runs) == 2 * trials["arm"].nunique() and runs["run_id"].is_unique
    config = result.study.spec.arm_config(trials["arm"].iloc[0], 0)
    assert config.regularize.dropout.p == trials["param:dropout"].iloc[0]
    assert config.optim.lr == trials["param:lr"].iloc[0] and config.model.options["widths"] == [16]
    paths = write_report(result.study)
    html = paths["html"].read_text()
    for name in ("trials", "parallel", "importance"):
        assert f'id="fig-{name}"' in html and (paths["figures"] / f"{name}.png").exists()
    assert "<h2>Best configuration (search)</h2>" in html and "<h2>Trials</h2>" in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_search_figures_decode_in_headless_chromium(searched, tmp_path):
    _, result = searched
    html = write_report(result.study, tmp_path / "report")["html"].read_text()
    probe = ("<script>addEventListener('load',()=>{document.body.dataset.images=[...document.images].filter("
             "i=>i.complete&&i.naturalWidth>0).map(i=>i.alt).join('|')})</script></body>")
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe))
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=90)
    found = re.search(r'data-images="([^"]*)"', proc.stdout)
    assert found, proc.stderr[-2000:]
    decoded = found.group(1).split("|")
    assert {"Trials", "Parallel coordinates", "Parameter importance", "Performance profile",
            "IQM and probability of improvement"} <= set(decoded) and len(decoded) == html.count("<img")


def test_the_best_parameters_become_a_compare_arm_on_fresh_seeds(searched):
    out, result = searched
    spec, notes = add_best_arm(SPEC, out)
    arm = f"tuned: {result.best['arm']}"
    assert list(spec.arms) == ["base", arm]
    assert spec.seed_list == [2, 3]  # the search trained seeds 0 and 1: its winner won partly by their luck
    assert notes == ["--best-of: seeds 2–3: the search trained seeds 0, 1, so its winner is judged on fresh ones"]
    best = result.study.spec.arm_config(result.best["arm"], 3)
    assert spec.arm_config(arm, 3) == best
    longer, notes = add_best_arm(SPEC.override({"train.epochs": 3}).with_seeds([5, 6, 7]), out)
    tuned = longer.arm_config(arm, 5)  # the winner's parameters on this study's baseline: its budget too
    assert tuned.train.epochs == 3 and tuned == best.model_copy(update={"seed": 5, "train": tuned.train})
    assert longer.seed_list == [5, 6, 7] and notes == [
        "--best-of: the search's base differs from this study's baseline arm in train.epochs; the tuned arm "
        "takes this study's"]
    with pytest.raises(FileNotFoundError, match="not a `reglab tune` directory"):
        add_best_arm(SPEC, result.study.path.parent / "nowhere")


def test_drawn_values_stay_in_their_range_and_integer_ranges_draw_integers(tmp_path):
    """3 significant digits would round 0.99995 to 1.0, outside [0.99, 0.9999] (and refused by the config);
    a narrow range far from 0 keeps steps of a thousandth of its width. Integer ends draw integers even
    where the grid's step is not whole (32:256:4 lists 106.67 between)."""
    from reglab.study.tune import _rounded

    ema, batch = parse_param("ema=0.99:0.9999:2"), parse_param("train.batch_size=32:256:4")
    assert (ema.low, ema.high, batch.low, batch.high) == (0.99, 0.9999, 32, 256)
    assert _rounded(0.99995, ema) == 0.9999 and _rounded(0.995374, ema) == 0.99537
    assert _rounded(0.123456, parse_param("dropout=0:0.5:3")) == 0.123
    assert _rounded(0.0123456, parse_param("l2=log:1e-5:1e-1:3")) == 0.0123
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(50):
        point = suggest(study.ask(), TuneSettings([ema, batch], sampler="random"))
        assert 0.99 <= point["ema"] <= 0.9999 and isinstance(point["train.batch_size"], int)
    settings = TuneSettings([batch], sampler="random", trials=1)
    run_tune(SPEC, settings, tmp_path, progress=False)  # its ends are validated, not 106.67


def test_a_pruned_trial_has_no_objective_value_in_the_trials_table(tmp_path):
    """Optuna keeps a pruned trial's last reported epoch value as its value: not the objective over seeds."""
    spec = SPEC.with_seeds(3)
    settings = TuneSettings([parse_param("lr=0.2,0.1,0.05,1e-6")], sampler="grid", pruner="median")
    trials = run_tune(spec, settings, tmp_path, wave=1, progress=False).trials.set_index("arm")
    assert trials.loc["lr=1e-06", "state"] == "pruned" and np.isnan(trials.loc["lr=1e-06", "value"])
    assert trials.drop("lr=1e-06")["value"].notna().all()


def test_a_reopened_search_draws_new_points_instead_of_its_first_ones_again(tmp_path):
    """A sampler's state is not stored: reopened (a resumed `reglab tune`), it is seeded anew from the
    trials so far, so it does not repeat the points the search began with."""
    from reglab.study.tune import open_study

    settings = TuneSettings([parse_param("dropout=0:0.5:6"), parse_param("lr=log:0.001:0.1:3")], sampler="random",
                            trials=6, seed=0)
    points = []
    for _ in range(2):  # the first session, then the resumed one
        study = open_study(tmp_path, settings)
        for _ in range(3):
            trial = study.ask()
            points.append(tuple(suggest(trial, settings).values()))
            study.tell(trial, 0.5)
    assert len(set(points)) == 6, points


def test_force_with_fewer_seeds_deletes_the_dropped_seeds_cells(tmp_path):
    settings = TuneSettings([parse_param("dropout=0,0.4")], sampler="grid", trials=2)
    run_tune(SPEC.with_seeds(3), settings, tmp_path, progress=False)
    result = run_tune(SPEC, settings, tmp_path, progress=False, force=True)
    assert sorted(result.study.runs["seed"].unique()) == [0, 1] and set(result.trials["n"]) == {2}
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "dropout_0.4__s0", "dropout_0.4__s1", "dropout_0__s0", "dropout_0__s1"]


def test_an_invalid_value_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"arms.dropout=1.5.regularize.dropout.p: Input should be less than 1"):
        run_tune(SPEC, TuneSettings([parse_param("dropout=0:1.5:4")], sampler="random"), tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"--metric: val_acc needs a validation split, which arm 'dropout=0.1'"):
        run_tune(SPEC, TuneSettings([parse_param("dropout=0.1")], metric="val_acc"), tmp_path, progress=False)
    assert not (tmp_path / "study.db").exists()


def test_a_changed_search_is_refused_without_force(searched):
    out, _ = searched
    with pytest.raises(ConfigError, match=r"the search changed since it was started \(--param, --sampler, "
                                          r"--sampler-seed, --trials\); use --force"):
        run_tune(SPEC, TuneSettings([parse_param("dropout=0.1,0.2")], sampler="grid"), out, progress=False)
    settings = TuneSettings([parse_param("dropout=0:0.5:3"), parse_param("lr=log:0.01:0.3:3")], sampler="tpe",
                            trials=4, seed=1, metric="test_loss")  # the fixture's search, but for these two
    with pytest.raises(ConfigError, match=r"changed since it was started \(--metric, --trials\)"):
        run_tune(SPEC, settings, out, progress=False)
    fixture = TuneSettings([parse_param("dropout=0:0.5:3"), parse_param("lr=log:0.01:0.3:3")], sampler="tpe",
                           trials=3, seed=1)
    with pytest.raises(ConfigError, match=r"changed since it was started \(the seeds\); use --force"):
        run_tune(SPEC.with_seeds(3), fixture, out, progress=False)
    statistics = StudySpec.from_dict({**SPEC.to_dict(), "statistics": {"correction": "bh"}, "description": "x"})
    assert run_tune(statistics, fixture, out, progress=False).executed == []  # how results are read: no change


def test_a_compare_study_directory_is_refused_and_kept(tmp_path):
    spec = StudySpec.from_dict({"name": "tiny", "seeds": 1, "base": {**BASE, "train": {**BASE["train"], "epochs": 1}},
                                "arms": {"baseline": {}, "dropout": {"regularize": {"dropout": {"p": 0.2}}}}})
    run_study(spec, tmp_path, progress=False)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    with sqlite3.connect(tmp_path / "study.db") as db:
        rows = db.execute("SELECT * FROM runs ORDER BY run_id").fetchall()
        meta = db.execute("SELECT * FROM meta ORDER BY key").fetchall()
    for sampler in ("tpe", "grid"):
        settings = TuneSettings([parse_param("dropout=0.1")], sampler=sampler, trials=1)
        with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}: holds a `reglab compare` study")) as err:
            run_tune(spec, settings, tmp_path, progress=False, force=True)
        assert "\n" not in str(err.value) and "another --out" in str(err.value)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    assert after == before and {p.parts[1] for p in after} == {"baseline__s0", "dropout__s0"}
    with sqlite3.connect(tmp_path / "study.db") as db:
        assert db.execute("SELECT * FROM runs ORDER BY run_id").fetchall() == rows
        assert db.execute("SELECT * FROM meta ORDER BY key").fetchall() == meta
    assert list(load_study(tmp_path).arms) == ["baseline", "dropout"]
    assert not (tmp_path / "search.json").exists()  # no search marker: the study can still be rebuilt


def test_a_search_where_no_trial_completes_still_gets_its_report(tmp_path):
    diverging = StudySpec.from_dict({"name": "tiny", "seeds": 1, "arms": {"base": {}}, "base": {
        **BASE, "optim": {"name": "momentum", "lr": 1e30}, "train": {**BASE["train"], "epochs": 1}}})
    settings = TuneSettings([parse_param("dropout=0,0.1")], sampler="grid")
    result = run_tune(diverging, settings, tmp_path, progress=False)
    assert result.best is None and list(result.trials["state"]) == ["fail", "fail"]
    assert set(result.study.runs["status"]) == {"diverged"}
    paths = write_report(result.study)
    html, md = paths["html"].read_text(), paths["markdown"].read_text()
    assert "<h2>Best configuration (search)</h2>" in html and "no trial completed" in html
    assert "no trial completed" in md and md.count("finished with a finite test\\_acc") == 2  # each trial's note
    assert (paths["figures"] / "trials.png").exists() and 'id="fig-trials"' in html
    assert not (paths["figures"] / "parallel.png").exists()  # no complete trial to draw
    assert run_tune(diverging, settings, tmp_path, progress=False).executed == []  # a divergence is a result


def test_a_resumed_search_retries_the_trials_whose_runs_failed(tmp_path):
    settings = TuneSettings([parse_param("dropout=0,0.1")], sampler="grid")
    failed = run_tune(SPEC, settings, tmp_path, executor=FailEverything(), progress=False)
    assert list(failed.trials["state"]) == ["fail", "fail"] and set(failed.study.runs["status"]) == {"failed"}
    again = run_tune(SPEC, settings, tmp_path, progress=False)
    assert sorted(again.executed) == sorted(failed.study.runs["run_id"])  # every failed run, once
    assert set(again.study.runs["status"]) == {"done"} and again.best is not None
    assert sorted(again.trials.query("state == 'complete'")["arm"]) == ["dropout=0", "dropout=0.1"]
    assert run_tune(SPEC, settings, tmp_path, progress=False).executed == []  # nothing left to retry


def test_median_pruning_skips_the_remaining_seeds_of_a_bad_trial(tmp_path):
    spec = SPEC.with_seeds(3)
    settings = TuneSettings([parse_param("lr=0.2,0.1,0.05,1e-6")], sampler="grid", pruner="median")
    result = run_tune(spec, settings, tmp_path, wave=1, progress=False)
    trials = result.trials.set_index("arm")
    assert trials.loc["lr=1e-06", "state"] == "pruned" and trials.loc["lr=1e-06", "n"] == 1  # lr = 1e-6 learns nothing
    assert (trials.drop("lr=1e-06")["state"] == "complete").all() and (trials.drop("lr=1e-06")["n"] == 3).all()
    assert len(result.study.runs) == 3 * 3 + 1


def _cells(out: Path) -> dict[str, tuple]:
    with sqlite3.connect(f"file:{out / 'study.db'}?mode=ro", uri=True) as db:
        return {r[0]: r[1:] for r in db.execute("SELECT run_id, status, attempts, finished FROM runs")}


@pytest.mark.slow
def test_sigkill_and_rerun_resumes_without_training_a_finished_cell_twice(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text('name = "tiny"\nseeds = 2\n[base]\ndata = { name = "mnist1d", train_subset = 1024, '
                    'test_subset = 256 }\nmodel.options.widths = [32]\ntrain = { epochs = 6, batch_size = 32, '
                    'device = "cpu", eval_train_samples = 128 }\n[arms.base]\n')
    out = tmp_path / "out"
    args = ["tune", str(toml), "--param", "dropout=0,0.1,0.2", "--sampler", "grid", "--out", str(out),
            "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", "from reglab.cli import main; main()", *args], env=env,
                            stdout=log, stderr=log)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill while a cell is training and at least two have finished
        assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-2000:]
        try:
            cells = _cells(out)
        except sqlite3.OperationalError:  # not created yet
            cells = {}
        states = [c[0] for c in cells.values()]
        if states.count("done") >= 2 and "running" in states:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _cells(out)
    finished = {r: c for r, c in before.items() if c[0] == "done"}
    interrupted = [r for r, c in before.items() if c[0] == "running"]
    assert len(finished) >= 2 and len(interrupted) == 1

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    after = _cells(out)
    assert len(after) == 6 and all(c[0] == "done" for c in after.values())
    for run, cell in finished.items():
        assert after[run] == cell  # not trained again: same attempts, same finish time
    assert after[interrupted[0]][1] == 2  # the interrupted cell ran a second time
    study = optuna.load_study(study_name="reglab-tune", storage=f"sqlite:///{out / 'study.db'}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["dropout"] for t in complete) == [0, 0.1, 0.2]  # each configuration once
    assert [t.state.name for t in study.trials].count("FAIL") == 1  # the interrupted trial
    values = load_study(out).runs.groupby("arm")["final_test_acc"].mean()
    assert {t.user_attrs["arm"]: t.value for t in complete} == pytest.approx(values.to_dict())
    assert np.isfinite(list(values)).all()


def test_tune_cli_with_asha_then_the_best_configuration_in_one_compare(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text('name = "tiny"\nseeds = 2\n[base]\ndata = { name = "mnist1d", train_subset = 256, '
                    'test_subset = 256 }\nmodel.options.widths = [16]\ntrain = { epochs = 2, batch_size = 64, '
                    'device = "cpu", eval_train_samples = 128 }\n[arms.base]\n')
    runner = CliRunner()
    result = runner.invoke(app, ["tune", str(toml), "--param", "lr=log:0.01:0.3:3", "--sampler", "random",
                                 "--trials", "2", "--pruner", "asha", "--out", str(tmp_path / "t"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "best: lr=" in result.output and (tmp_path / "t" / "report" / "figures" / "trials.png").exists()
    result = runner.invoke(app, ["compare", str(toml), "--best-of", str(tmp_path / "t"), "--seeds", "2",
                                 "--epochs", "1", "--out", str(tmp_path / "c"), "--workers", "1",
                                 "--target", "test_acc=0.15"])
    assert result.exit_code == 0, result.output
    study = load_study(tmp_path / "c")
    assert study.arms[0] == "base" and study.arms[1].startswith("tuned: lr=") and len(study.runs) == 4
    assert {study.spec.arm_config(arm, 2).train.epochs for arm in study.arms} == {1}  # the tuned arm's too
    assert study.spec.seed_list == [2, 3] and "judged on fresh ones" in result.output
    assert study.spec.statistics.target == {"test_acc": 0.15}
    bad = runner.invoke(app, ["compare", str(toml), "--target", "test_acc", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "--target 'test_acc': expected METRIC=VALUE" in str(bad.exception)
    bad = runner.invoke(app, ["tune", str(toml), "--param", "dropout=0.1", "--metric", "foo", "--out",
                              str(tmp_path / "y")])
    assert bad.exit_code != 0 and "--metric: unknown 'foo' (choose from " in str(bad.exception)
    assert not (tmp_path / "y").exists()  # refused before anything trained
    if not torch.cuda.is_available():  # a device this machine lacks: refused once, as compare does
        bad = runner.invoke(app, ["sweep", str(toml), "--param", "dropout=0.1", "--device", "cuda",
                                  "--out", str(tmp_path / "z")])
        assert bad.exit_code != 0 and "train.device: 'cuda'" in str(bad.exception)
        assert not (tmp_path / "z").exists()


def test_a_search_stored_before_a_field_existed_resumes(searched, tmp_path):
    """The stored base config lacks a field reglab added since: at its default it is no change (the search
    resumes and runs nothing), at another value it is ("the base config")."""
    out = tmp_path / "tune"
    shutil.copytree(searched[0], out)
    settings = TuneSettings([parse_param("dropout=0:0.5:3"), parse_param("lr=log:0.01:0.3:3")], sampler="tpe",
                            trials=3, seed=1)

    def store_base(edit) -> None:
        with sqlite3.connect(out / "study.db") as db:
            described = json.loads(db.execute("SELECT value FROM meta WHERE key = 'tune'").fetchone()[0])
            edit(described["base"])
            db.execute("UPDATE meta SET value = ? WHERE key = 'tune'", (json.dumps(described),))

    store_base(lambda base: base["regularize"].pop("sam_rho"))
    assert run_tune(SPEC, settings, out, progress=False).executed == []
    store_base(lambda base: base["regularize"].update(sam_rho=0.05))
    with pytest.raises(ConfigError, match=r"changed since it was started \(the base config\); use --force"):
        run_tune(SPEC, settings, out, progress=False)
