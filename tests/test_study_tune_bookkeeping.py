"""A search's bookkeeping without training: a trial's objective over its seeds (mean or IQM, diverged
runs left out), which trials count towards the budget, which failed trials a resumed search asks
again, the steps a trial reports its seeds' curves at, when it may be pruned, and which cells it
reuses (a stand-in executor 'trains' each run instantly)."""

import json
import math

import pytest

from conftest import FailEverything
from reglab.study import StudySpec
from reglab.study.runner import plan
from reglab.study.store import RunRow, StudyStore
from reglab.study.sweep import parse_param
from reglab.study.tracking import Tracker
from reglab.study.tune import TuneSettings, _run_value, _Search, aggregate, counted_trials, execute_cells, retry_failed
from reglab.train.loop import RunResult

optuna = pytest.importorskip("optuna")


def test_the_iqm_objective_is_the_mean_of_the_middle_half_of_the_seeds():
    values = [0.1, 0.5, 0.6, 0.7]  # one bad seed
    assert aggregate(values, "mean") == pytest.approx(0.475)
    assert aggregate(values, "iqm") == pytest.approx(0.55)  # the middle two of four
    assert aggregate([0.2, math.nan, 0.4], "mean") == pytest.approx(0.3)  # a run without a value is left out
    assert math.isnan(aggregate([math.nan], "iqm"))


def _row(run_id: str, status: str, final: dict | None) -> RunRow:
    return RunRow(run_id, "a", 0, 0, status, {}, "h", 1, None, None, 1.0, None, {"final": final} if final else None)


def test_only_a_done_run_gives_a_trial_its_value():
    """A run that diverged late can have a finite final accuracy: it is still no sample of the trial."""
    rows = {"a__s0": _row("a__s0", "done", {"test_acc": 0.8}), "a__s1": _row("a__s1", "diverged", {"test_acc": 0.1}),
            "a__s2": _row("a__s2", "failed", None)}
    assert _run_value(rows, "a__s0", "test_acc") == 0.8
    assert math.isnan(_run_value(rows, "a__s1", "test_acc"))
    assert math.isnan(_run_value(rows, "a__s2", "test_acc")) and math.isnan(_run_value(rows, "nope", "test_acc"))


def _trial(state, arm: str, value=None, **attrs):
    dist = {"dropout": optuna.distributions.CategoricalDistribution([0.0, 0.1, 0.2])}
    return optuna.trial.create_trial(state=state, value=value, params={"dropout": float(arm[-3:])}, distributions=dist,
                                     user_attrs={"arm": arm, **attrs})


def test_a_failed_trial_retried_since_no_longer_counts_towards_the_budget():
    state = optuna.trial.TrialState
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(state.FAIL, "dropout=0.0", error="no run finished"))  # 0: failed, then retried
    study.add_trial(_trial(state.COMPLETE, "dropout=0.1", value=0.7))  # 1
    study.add_trial(_trial(state.COMPLETE, "dropout=0.0", value=0.6, retry_of=0))  # 2: the retry of 0
    study.add_trial(_trial(state.FAIL, "dropout=0.2"))  # 3: left running by a killed driver (no error)
    assert [t.number for t in counted_trials(study)] == [1, 2]


def test_a_resumed_search_asks_again_only_trials_whose_runs_failed_not_those_that_diverged(tmp_path):
    """A divergence is a result (the trial failed for a reason of its own); a failed run is retried."""
    state = optuna.trial.TrialState
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(state.FAIL, "dropout=0.1", error="diverged"))
    study.add_trial(_trial(state.FAIL, "dropout=0.2", error="failed"))
    with StudyStore(tmp_path) as store:
        for arm, status in (("dropout=0.1", "diverged"), ("dropout=0.2", "failed")):
            store.add_run(f"{arm}__s0", arm, 0, 0, {}, "h")
            if status == "diverged":
                store.mark_finished(f"{arm}__s0", "diverged", 1.0, {})
            else:
                store.mark_failed(f"{arm}__s0", "RuntimeError: boom")
        retry_failed(study, store)
    waiting = study.get_trials(states=(state.WAITING,))
    assert [(t.system_attrs["fixed_params"], t.user_attrs) for t in waiting] == [({"dropout": 0.2}, {"retry_of": 1})]


# ------------------------------------------------------------------ one trial, with a stand-in trainer
SPEC = StudySpec.from_dict({"name": "t", "seeds": 2, "arms": {"base": {}}, "base": {
    "data": {"name": "mnist1d"}, "model": {"options": {"widths": [8]}}, "train": {"epochs": 2, "device": "cpu"}}})


class FakeTrainer:
    """An executor that 'trains' each run instantly: test_acc 0.1·epoch + 0.01·seed per epoch, done."""

    def __init__(self):
        self.ran: list[str] = []

    def execute(self, tasks, events):
        for task in tasks:
            self.ran.append(task.run_id)
            events.started(task)
            task.run_dir.mkdir(parents=True, exist_ok=True)
            epochs = [{"epoch": e, "test_acc": 0.1 * e + 0.01 * task.seed}
                      for e in range(1, task.config.train.epochs + 1)]
            (task.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))
            (task.run_dir / "summary.json").write_text(json.dumps({"status": "done"}))
            events.finished(task, RunResult("done", epochs, epochs[-1], epochs[-1], 1.0, 1, "cpu"))


class Trial(optuna.trial.FixedTrial):
    """A grid point whose pruner always says prune, keeping what was reported."""

    def __init__(self, params):
        super().__init__(params, number=0)
        self.reported: list[tuple[int, float]] = []

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return True


def search(tmp_path, wave: int, executor=None) -> _Search:
    settings = TuneSettings([parse_param("dropout=0.1")], sampler="grid")
    store = StudyStore(tmp_path)
    return _Search(store, SPEC, settings, executor or FakeTrainer(), wave, False, lambda _: None, Tracker())


def test_each_seed_reports_its_curve_at_its_own_steps(tmp_path):
    """Seed i's epoch e is reported at step i·epochs + e, so that pruning compares trials seed against seed."""
    s = search(tmp_path, wave=2)
    trial = Trial({"dropout": 0.1})
    s.trial(trial)
    s.store.close()
    assert [step for step, _ in trial.reported] == [1, 2, 3, 4]
    assert [v for _, v in trial.reported] == pytest.approx([0.1, 0.2, 0.11, 0.21])


def test_a_trial_is_pruned_only_while_seeds_remain(tmp_path):
    state = optuna.trial.TrialState
    one_wave = search(tmp_path / "one", wave=2)  # every seed in one wave: nothing left to save by pruning
    got, value, _ = one_wave.trial(Trial({"dropout": 0.1}))
    one_wave.store.close()
    assert got == state.COMPLETE and value == pytest.approx(0.205)
    waves = search(tmp_path / "two", wave=1)  # pruned after the first of two seeds
    got, value, _ = waves.trial(Trial({"dropout": 0.1}))
    waves.store.close()
    assert got == state.PRUNED and value is None and waves.executor.ran == ["dropout_0.1__s0"]


def test_a_diverged_cell_is_a_result_and_not_trained_again(tmp_path):
    """A retried trial (its other seed failed) reuses the cells that finished, diverged ones included."""
    s = search(tmp_path, wave=2)
    s.arms["dropout=0.1"] = {"regularize": {"dropout": {"p": 0.1}}}
    tasks = plan(s.spec(), tmp_path)
    with StudyStore(tmp_path) as store:
        for task, status in zip(tasks, ("diverged", "failed"), strict=True):
            config = task.config.to_dict()
            store.add_run(task.run_id, task.arm, task.seed, 0, config, "h")
            task.run_dir.mkdir(parents=True)
            (task.run_dir / "summary.json").write_text(json.dumps({"status": status}))
            if status == "diverged":
                store.mark_finished(task.run_id, "diverged", 1.0, {})
            else:
                store.mark_failed(task.run_id, "RuntimeError: boom")
        trainer = FakeTrainer()
        assert execute_cells(store, tasks, trainer, progress=False) == ["dropout_0.1__s1"]
        assert trainer.ran == ["dropout_0.1__s1"]
    s.store.close()


def test_a_finished_cell_whose_files_were_lost_is_trained_again_without_its_old_summary(tmp_path):
    """As `reconcile` does for a compare study: a retrain that fails must not show the lost run's old metrics."""
    s = search(tmp_path, wave=2)
    s.arms["dropout=0.1"] = {"regularize": {"dropout": {"p": 0.1}}}
    task = plan(s.spec(), tmp_path)[0]
    with StudyStore(tmp_path) as store:
        store.add_run(task.run_id, task.arm, task.seed, 0, task.config.to_dict(), "h")
        store.mark_finished(task.run_id, "done", 1.0, {"final": {"test_acc": 0.9}})  # no summary.json on disk
        assert execute_cells(store, [task], FailEverything(), progress=False) == [task.run_id]
        (row,) = store.runs()
        assert row.status == "failed" and row.summary is None
    s.store.close()
