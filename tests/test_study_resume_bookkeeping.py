"""Resume bookkeeping of a study index that the other tests leave open: a diverged run survives a lost
index, arms reordered in the spec reorder the runs, a run the spec no longer plans is not deleted
without force, a run that fails when trained again keeps no final metrics of its earlier life, and the
store refuses a finished status that is not one.

Tiny runs on CPU: mnist1d (128 training samples), an MLP of width 8, 1 epoch, 1 seed.
"""

import math
import sqlite3

import pytest

from conftest import FailEverything
from reglab.config import ConfigError
from reglab.study import StudySpec, load_study, run_study
from reglab.study.store import StudyStore

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = {
    "data": {"name": "mnist1d", "train_subset": 128, "test_subset": 128},
    "model": {"name": "mlp", "options": {"widths": [8]}},
    "optim": {"name": "momentum", "lr": 0.05},
    "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "eval_train_samples": 64},
}
DROPOUT = {"regularize": {"dropout": {"p": 0.2}}}
DIVERGES = {"optim": {"name": "sgd", "lr": 1e12}}  # a non-finite loss in the first epoch


def tiny(arms: dict, seeds=1, **extra) -> StudySpec:
    return StudySpec.from_dict({"name": "tiny", "seeds": seeds, "base": BASE, "arms": arms, **extra})


def statuses(out) -> dict[str, str]:
    with sqlite3.connect(out / "study.db") as conn:
        return dict(conn.execute("SELECT run_id, status FROM runs").fetchall())


def test_a_diverged_run_is_kept_as_finished_by_a_rebuilt_index(tmp_path):
    """A diverged run is a result, as a done one is: rebuilding a lost index must not train it again."""
    spec = tiny({"base": {}, "boom": DIVERGES})
    first = run_study(spec, tmp_path, progress=False)
    assert statuses(tmp_path) == {"base__s0": "done", "boom__s0": "diverged"}
    assert sorted(first.executed) == ["base__s0", "boom__s0"]

    (tmp_path / "study.db").unlink()
    for name in ("study.db-wal", "study.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    rebuilt = run_study(spec, tmp_path, progress=False, rebuild=True)
    assert rebuilt.executed == [] and sorted(rebuilt.skipped) == ["base__s0", "boom__s0"]
    assert statuses(tmp_path) == {"base__s0": "done", "boom__s0": "diverged"}


def test_a_diverged_run_whose_files_are_gone_is_reported_missing_not_diverged(tmp_path):
    """A finished run is never reported from the index alone: without its summary.json a diverged run,
    like a done one, reads back as missing (and the next invocation trains it again)."""
    spec = tiny({"base": {}, "boom": DIVERGES})
    run_study(spec, tmp_path, progress=False)
    (tmp_path / "runs" / "boom__s0" / "summary.json").unlink()
    (tmp_path / "runs" / "base__s0" / "summary.json").unlink()
    status = dict(zip(load_study(tmp_path).runs["run_id"], load_study(tmp_path).runs["status"], strict=True))
    assert status == {"base__s0": "missing", "boom__s0": "missing"}
    again = run_study(spec, tmp_path, progress=False)
    assert sorted(again.executed) == ["base__s0", "boom__s0"]


def test_reordering_the_arms_reorders_the_runs_without_training_them_again(tmp_path):
    """The order of the arms is not part of what is trained (no --force needed), but the runs table
    follows the spec's order: seed-major, arms in the order the spec lists them now."""
    run_study(tiny({"base": {}, "dropout": DROPOUT}, seeds=2), tmp_path, progress=False)
    reordered = tiny({"dropout": DROPOUT, "base": {}}, seeds=2, baseline="base")
    again = run_study(reordered, tmp_path, progress=False)
    assert again.executed == []
    expected = [f"{arm}__s{seed}" for seed in (0, 1) for arm in ("dropout", "base")]  # seed-major, new arm order
    assert list(again.runs["run_id"]) == expected
    assert list(load_study(tmp_path).runs["run_id"]) == expected


def test_a_run_the_spec_does_not_plan_is_not_deleted_without_force(tmp_path):
    """A run the index holds but the unchanged spec does not plan (e.g. after reglab renamed run ids)
    is refused, not silently deleted with its directory; --force deletes it."""
    spec = tiny({"base": {}})
    run_study(spec, tmp_path, progress=False)
    with StudyStore(tmp_path) as store:
        row = store.runs()[0]
        store.add_run("ghost__s0", "ghost", 0, 1, row.config, row.config_hash)
    ghost = tmp_path / "runs" / "ghost__s0"
    ghost.mkdir()
    (ghost / "kept").write_text("x")

    with pytest.raises(ConfigError, match=r"the resolved configs of 1 runs changed.*use --force"):
        run_study(spec, tmp_path, progress=False)
    assert "ghost__s0" in statuses(tmp_path) and (ghost / "kept").exists()

    forced = run_study(spec, tmp_path, progress=False, force=True)
    assert forced.executed == [] and set(statuses(tmp_path)) == {"base__s0"} and not ghost.exists()


def test_a_finished_run_that_fails_when_trained_again_keeps_no_final_metrics(tmp_path):
    """A done run whose summary.json was lost is trained again; when that attempt fails, the run is
    failed and reports no final metrics (not the ones of its lost, earlier result)."""
    spec = tiny({"base": {}})
    run_study(spec, tmp_path, progress=False)
    (tmp_path / "runs" / "base__s0" / "summary.json").unlink()
    again = run_study(spec, tmp_path, executor=FailEverything(), progress=False)
    row = again.runs.set_index("run_id").loc["base__s0"]
    assert row["status"] == "failed" and row["error"] == "RuntimeError: boom"
    assert math.isnan(row["final_test_acc"]) and math.isnan(row["final_test_loss"])
    with StudyStore(tmp_path) as store:
        assert store.runs()[0].summary is None


@pytest.mark.parametrize("status", ["failed", "pending", "running", "nonsense"])
def test_the_store_records_only_done_or_diverged_as_finished(tmp_path, status):
    with StudyStore(tmp_path) as store:
        store.add_run("a__s0", "a", 0, 0, {"x": 1}, "h")
        with pytest.raises(ValueError, match=r"status: expected one of \('done', 'diverged'\)"):
            store.mark_finished("a__s0", status, 1.0, {})
        assert store.runs()[0].status == "pending"
        store.mark_finished("a__s0", "diverged", 1.0, {"final": {}})
        assert store.runs()[0].status == "diverged"
