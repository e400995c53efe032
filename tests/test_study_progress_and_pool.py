"""The progress display's counts and the local executor's bookkeeping, without training: bars count a
run kept from an earlier invocation as complete and never count past a run's epochs; the line off a
terminal says how many runs run and how many are kept; a pool's unstarted runs are never charged a
worker death, and its largest packs go first; the worker count and the device override are honoured."""

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from conftest import Recorder
from reglab.config import ConfigError
from reglab.study import LocalExecutor, StudySpec
from reglab.study.executors import MAX_WORKER_DEATHS, _Queue, settle_lost, with_device
from reglab.study.progress import StudyProgress
from reglab.study.runner import plan

ARMS = {"a": [("a__s0", 3), ("a__s1", 3)], "b": [("b__s0", 3), ("b__s1", 3)]}


def completed(progress: StudyProgress) -> dict[str, float]:
    return {arm: progress.progress.tasks[bar].completed for arm, bar in progress.bars.items()}


def task(run_id: str) -> SimpleNamespace:
    return SimpleNamespace(run_id=run_id, seed=int(run_id[-1]))


def test_a_kept_run_fills_its_epochs_of_its_arms_bar():
    progress = StudyProgress(ARMS, enabled=False)
    progress.skipped("a__s0")
    assert completed(progress) == {"a": 3, "b": 0}
    assert [progress.progress.tasks[bar].total for bar in progress.bars.values()] == [6, 6]


def test_a_bar_never_counts_more_epochs_than_its_runs_have():
    progress = StudyProgress(ARMS, enabled=False)
    progress.epoch(task("b__s1"), {"epoch": 2})
    assert completed(progress) == {"a": 0, "b": 2}
    progress.epoch(task("b__s1"), {"epoch": 7})  # e.g. a run resumed past the epochs planned
    assert completed(progress) == {"a": 0, "b": 3}


def test_the_line_off_a_terminal_says_how_many_runs_run_and_how_many_are_kept():
    stream = io.StringIO()
    progress = StudyProgress(ARMS, console=Console(file=stream, width=200))
    progress.planned(3, 1)
    progress.planned(3, 1, analyse_only=2)
    assert stream.getvalue().splitlines() == [
        "running 3 runs, keeping 1 finished ones",
        "running 3 runs (2 trained before: analysed only), keeping 1 finished ones"]


def test_runs_that_had_not_started_are_never_charged_a_worker_death():
    started, unstarted = task("a__s0"), task("a__s1")
    events, deaths = Recorder(), {}
    for round_ in range(1, MAX_WORKER_DEATHS + 3):  # the pool breaks again and again
        retry = settle_lost([started, unstarted], {"a__s0"}, deaths, events)
        assert unstarted in retry
        assert (started in retry) == (round_ < MAX_WORKER_DEATHS)
        if started not in retry:
            break
    assert "a__s1" not in deaths and list(events.errors) == ["a__s0"]
    assert f"died {MAX_WORKER_DEATHS} times" in events.errors["a__s0"]


def test_a_pool_dispatches_the_largest_packs_first_then_single_runs_in_plan_order():
    t = {name: task(name) for name in ("a__s0", "a__s1", "a__s2", "a__s3", "a__s4", "a__s5")}
    pair, triple, one = [t["a__s0"], t["a__s1"]], [t["a__s2"], t["a__s3"], t["a__s4"]], [t["a__s5"]]
    queue = _Queue([pair, one, triple], (), [t["a__s5"], t["a__s0"]])
    order = []
    while queue:
        order.append(queue.pop())
    assert order == [("pack", triple), ("pack", pair), ("pack", one), ("run", t["a__s5"]), ("run", t["a__s0"])]


def test_a_pool_needs_at_least_one_worker():
    with pytest.raises(ConfigError, match=r"workers: must be at least 1 \(got 0\)"):
        LocalExecutor(workers=0)


def test_the_executors_device_replaces_each_runs_device(tmp_path):
    spec = StudySpec.from_dict({"name": "t", "base": {"data": {"name": "mnist1d"}, "train": {"device": "auto"}},
                                "arms": {"base": {}}, "seeds": 1})
    (original,) = plan(spec, tmp_path)
    moved = with_device(original, "cpu")
    assert original.config.train.device == "auto" and moved.config.train.device == "cpu"
    assert (moved.run_id, moved.seed, moved.run_dir) == (original.run_id, original.seed, original.run_dir)
    assert with_device(original, None) is original
