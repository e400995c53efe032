"""Running studies: store rows, diverged and failed runs, resume, changed specs, custom executors.

Tiny runs on CPU: mnist1d (256 training samples), a one-hidden-layer MLP of width 16, 3 epochs; and the
augmentation preset shrunk to 200 mnist-5k digits and 1 epoch.
"""

import json
import sqlite3

import pytest

from reglab.config import ConfigError
from reglab.report.tables import headline_rows
from reglab.study import LocalExecutor, RunTask, StudySpec, load_spec, load_study, make_executor, run_study
from reglab.study.executors import run_task

BASE = {
    "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
    "model": {"name": "mlp", "options": {"widths": [16]}},
    "optim": {"name": "momentum", "lr": 0.05},
    "train": {"epochs": 3, "batch_size": 64, "device": "cpu", "eval_train_samples": 128},
}


def tiny(arms: dict, seeds=2, **extra) -> StudySpec:
    return StudySpec.from_dict({"name": "tiny", "seeds": seeds, "base": BASE, "arms": arms, **extra})


def db_rows(out) -> list[dict]:
    conn = sqlite3.connect(out / "study.db")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY position")]
    conn.close()
    return rows


def test_diverged_and_failed_runs_are_reported_while_the_others_finish(tmp_path):
    spec = tiny({"base": {}, "dropout": {"regularize": {"dropout": {"p": 0.2}}},
                 "boom": {"optim": {"name": "sgd", "lr": 1e3}},  # diverges
                 "broken": {"data": {"name": "fn1d"}}})  # fails when its data loads: 20 samples < 256
    result = run_study(spec, tmp_path, progress=False)
    status = dict(zip(result.runs["run_id"], result.runs["status"], strict=True))
    assert status == {f"{a}__s{s}": st for s in (0, 1) for a, st in
                      (("base", "done"), ("dropout", "done"), ("boom", "diverged"), ("broken", "failed"))}
    rows = db_rows(tmp_path)
    assert len(rows) == 8 and len({r["run_id"] for r in rows}) == 8
    broken = [r for r in rows if r["arm"] == "broken"]
    assert all("exceeds the 20 train samples of fn1d" in r["error"] and "\n" not in r["error"]
               for r in broken)
    assert all(r["started"] and r["finished"] for r in rows)
    boom = result.runs[result.runs["arm"] == "boom"]
    assert (boom["diverged_epoch"] >= 1).all()

    summary = result.summary()
    acc = summary[summary["metric"] == "final_test_acc"].set_index("arm")
    assert acc.loc["boom", "diverged"] == 2 and acc.loc["boom", "n"] == 0
    assert acc.loc["boom", "verdict"] == "needs ≥ 2 seeds"
    assert acc.loc["base", "verdict"] == "baseline" and acc.loc["dropout", "n"] == 2
    headline = {r["arm"]: r for r in headline_rows(result, summary, result.stability())}
    assert headline["boom"]["diverged"] == "2/2 diverged" and headline["base"]["diverged"] == "none"

    again = run_study(spec, tmp_path, progress=False)  # only the failed runs are tried again
    assert sorted(again.executed) == ["broken__s0", "broken__s1"] and len(again.skipped) == 6
    assert {r["run_id"]: r["attempts"] for r in db_rows(tmp_path)}["broken__s0"] == 2


def test_rerun_resumes_and_a_changed_spec_needs_force(tmp_path):
    spec = tiny({"base": {}, "dropout": {"regularize": {"dropout": {"p": 0.2}}}})
    first = run_study(spec, tmp_path, progress=False)
    assert len(first.executed) == 4 and (first.runs["status"] == "done").all()
    before = {r["run_id"]: r for r in db_rows(tmp_path)}

    again = run_study(spec, tmp_path, progress=False)
    assert again.executed == [] and len(again.skipped) == 4
    assert {r["run_id"]: r for r in db_rows(tmp_path)} == before

    changed = tiny({"base": {}, "dropout": {"regularize": {"dropout": {"p": 0.3}}}})
    with pytest.raises(ConfigError, match=r"spec changed since it was started \(arms.dropout\); use --force"):
        run_study(changed, tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"spec changed since it was started"):  # a sound index is not rebuilt
        run_study(changed, tmp_path, progress=False, rebuild=True)
    assert {r["run_id"]: r for r in db_rows(tmp_path)} == before and not list(tmp_path.glob("study.db*.damaged*"))
    forced = run_study(changed, tmp_path, force=True, progress=False)
    assert sorted(forced.executed) == ["dropout__s0", "dropout__s1"]
    after = {r["run_id"]: r for r in db_rows(tmp_path)}
    assert after["base__s0"] == before["base__s0"]  # unchanged config: kept as it was
    assert json.loads(after["dropout__s0"]["config"])["regularize"]["dropout"]["p"] == 0.3

    fewer = run_study(changed.with_seeds(1), tmp_path, force=True, progress=False)
    assert fewer.executed == [] and sorted(fewer.runs["run_id"]) == ["base__s0", "dropout__s0"]
    assert not (tmp_path / "runs" / "base__s1").exists()


def test_each_rebuild_of_a_damaged_index_keeps_the_damaged_file(tmp_path):
    spec = tiny({"base": {}}, seeds=1).override({"train.epochs": 1})
    run_study(spec, tmp_path, progress=False)
    for n, kept in enumerate(("study.db.damaged", "study.db.damaged.1")):
        (tmp_path / "study.db").write_bytes(f"garbage {n}".encode() * 100)
        for name in ("study.db-wal", "study.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        rebuilt = run_study(spec, tmp_path, progress=False, rebuild=True)
        assert rebuilt.executed == [] and (tmp_path / kept).read_bytes().startswith(f"garbage {n}".encode())


def test_load_study_tables(tmp_path):
    spec = tiny({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}, description="d")
    run_study(spec, tmp_path, progress=False)
    study = load_study(tmp_path)
    assert study.arms == ["base", "wd"] and study.baseline == "base"
    assert list(study.runs["run_id"]) == ["base__s0", "wd__s0", "base__s1", "wd__s1"]  # seed-major
    for column in ("arm", "seed", "status", "final_test_acc", "best_test_acc", "final_test_loss",
                   "final_train_loss", "gap_acc", "gap_loss", "fluctuation", "seconds"):
        assert column in study.runs
    assert len(study.epochs) == 4 * 3 and set(study.epochs["epoch"]) == {1, 2, 3}
    row = study.runs.iloc[0]
    assert row["gap_acc"] == pytest.approx(row["final_train_eval_acc"] - row["final_test_acc"])
    last = study.epochs[(study.epochs["run_id"] == "base__s0") & (study.epochs["epoch"] == 3)].iloc[0]
    assert row["final_test_loss"] == pytest.approx(last["test_loss"])
    with pytest.raises(FileNotFoundError, match="study directory"):
        load_study(tmp_path / "nowhere")


class ReversedExecutor:
    """A minimal third-party executor: runs tasks last-first and reports through the events."""

    def __init__(self):
        self.seen: list[str] = []

    def execute(self, tasks, events):
        for task in reversed(tasks):
            assert isinstance(task, RunTask) and task.run_dir.name == task.run_id
            self.seen.append(task.run_id)
            events.started(task)
            events.finished(task, run_task(task, lambda metrics, task=task: events.epoch(task, metrics)))


def test_any_executor_can_drive_a_study(tmp_path):
    spec = tiny({"base": {}, "dropout": {"regularize": {"dropout": {"p": 0.2}}}}, seeds=1)
    executor = ReversedExecutor()
    result = run_study(spec, tmp_path, executor=executor, progress=False)
    assert executor.seen == ["dropout__s0", "base__s0"]
    assert (result.runs["status"] == "done").all() and len(result.epochs) == 6
    assert isinstance(make_executor("local", workers=2, device=None), LocalExecutor)
    with pytest.raises(ValueError, match="unknown 'nope'"):
        make_executor("nope")


def test_the_augmentation_preset_trains_every_arm_in_a_tiny_version(tmp_path):
    """Crop, rotation, cutout and input noise in one study on real digits (mnist-5k, offline): every run
    finishes, and the augmented arms train on other inputs than the baseline (another training loss)."""
    spec = load_spec("augmentation", seeds=2, epochs=1).override(
        {"data.train_subset": 200, "data.test_subset": 100, "train.device": "cpu", "train.eval_train_samples": 100})
    result = run_study(spec, tmp_path, progress=False)
    assert set(result.runs["status"]) == {"done"} and len(result.runs) == 10
    train_loss = result.runs.groupby("arm")["final_train_loss"].mean()
    assert all(train_loss[arm] != train_loss["none"] for arm in ("crop", "rotate", "cutout", "noise"))
