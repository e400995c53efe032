"""A killed pool worker costs nothing: its run resumes in a fresh pool, unstarted runs are not failed,
and the study ends equal, bit for bit, to an uninterrupted in-process one (one thread rule on every path).
"""

import json
import multiprocessing
import os
import signal

import pytest

from conftest import Recorder
from reglab.study import LocalExecutor, StudySpec, run_study
from reglab.study.store import StudyStore

SPEC = {
    "name": "killed worker", "seeds": 2,
    "base": {"data": {"name": "mnist1d", "train_subset": 512, "test_subset": 256},
             "model": {"name": "mlp", "options": {"widths": [32]}}, "optim": {"name": "momentum", "lr": 0.05},
             "regularize": {"dropout": {"p": 0.1}},
             "train": {"epochs": 6, "batch_size": 8, "device": "cpu", "eval_train_samples": 128}},
    "arms": {"base": {}, "l2": {"regularize": {"l2": 0.001}}},
}


class KillAWorker:
    """Wraps the study's events: at the first epoch reported, SIGKILL one pool worker process.

    The runs are long enough (64 steps an epoch) that both workers still train then: the driver reads
    progress every 0.2 s, and a worker killed after the last result would break nothing."""

    def __init__(self, events):
        self.events, self.killed = events, None

    def __getattr__(self, name):
        return getattr(self.events, name)

    def epoch(self, task, metrics):
        if self.killed is None:
            workers = multiprocessing.active_children()
            assert workers, "no pool worker to kill"
            self.killed = workers[0].pid
            os.kill(self.killed, signal.SIGKILL)
        self.events.epoch(task, metrics)


class KillingExecutor:
    """Runs the study with `inner` (default: a 2-worker local pool), killing one worker at the first epoch."""

    def __init__(self, inner=None):
        self.inner, self.wrapper = inner or LocalExecutor(workers=2), None

    def execute(self, tasks, events):
        self.wrapper = KillAWorker(events)
        self.inner.execute(tasks, self.wrapper)


def metrics(out, run_id):
    lines = (out / "runs" / run_id / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("seconds")} for line in lines]


@pytest.mark.slow
def test_killed_worker_retries_and_matches_an_uninterrupted_in_process_study(tmp_path):
    spec = StudySpec.from_dict(SPEC)
    killer = KillingExecutor()
    pooled = run_study(spec, tmp_path / "pool", executor=killer, progress=False)
    assert killer.wrapper.killed is not None
    assert (pooled.runs["status"] == "done").all(), pooled.runs[["run_id", "status", "error"]]
    with StudyStore(tmp_path / "pool") as store:
        attempts = {row.run_id: row.attempts for row in store.runs()}
    assert max(attempts.values()) >= 2  # the killed worker's run was started again
    assert all(a >= 1 for a in attempts.values())

    serial = run_study(spec, tmp_path / "serial", executor=LocalExecutor(workers=1), progress=False)
    for run_id in serial.runs["run_id"]:
        assert metrics(tmp_path / "pool", run_id) == metrics(tmp_path / "serial", run_id), run_id
        assert len(metrics(tmp_path / "pool", run_id)) == SPEC["base"]["train"]["epochs"]
    summary = json.loads((tmp_path / "pool" / "runs" / "base__s0" / "summary.json").read_text())
    assert summary["threads"] == 1 and summary["config"]["train"]["threads"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("pack", [2, "auto"])
def test_killed_worker_of_a_packed_pool_retries_its_runs(tmp_path, pack):
    """Packs share a pool with single runs: a killed worker's pack is retried run by run from checkpoints.
    With auto packing a worker dies while the first run trains and the measurement runs (or has run)."""
    from reglab.study.packed import PackedExecutor

    spec = StudySpec.from_dict(SPEC)
    killer = KillingExecutor(PackedExecutor(workers=2, pack=pack))
    packed = run_study(spec, tmp_path / "packed", executor=killer, progress=False)
    assert killer.wrapper.killed is not None
    assert (packed.runs["status"] == "done").all(), packed.runs[["run_id", "status", "error"]]
    with StudyStore(tmp_path / "packed") as store:
        attempts = {row.run_id: row.attempts for row in store.runs()}
    assert max(attempts.values()) >= 2
    for run_id in packed.runs["run_id"]:
        assert len(metrics(tmp_path / "packed", run_id)) == SPEC["base"]["train"]["epochs"]


def test_a_run_that_kills_its_worker_fails_alone_and_the_run_beside_it_finishes(tmp_path, monkeypatch):
    """The pool does not say which worker died: both runs that were training resume alone, each in a pool
    of one worker, where the killer's deaths are counted and its neighbour trains to the end."""
    import concurrent.futures as cf
    import queue
    from concurrent.futures.process import BrokenProcessPool
    from types import SimpleNamespace

    from reglab.study import executors
    from reglab.study.runner import plan

    pools = []

    class Pool:  # no clock: base__s0 kills its worker, breaking the pool, once every worker has a run
        def __init__(self, workers, messages):
            self.workers, self.messages, self.running, self.broken = workers, messages, {}, False
            pools.append(workers)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, task):
            if self.broken:
                raise BrokenProcessPool("a worker died")
            future = cf.Future()
            self.messages.put(("started", task.run_id, None))
            self.running[task.run_id] = future
            if "base__s0" not in self.running:  # a run beside no killer trains to the end
                future.set_result((True, f"trained {self.running.pop(task.run_id) and task.run_id}"))
            elif len(self.running) == self.workers:
                self.broken = True
                for f in self.running.values():
                    f.set_exception(BrokenProcessPool("a worker died"))
            return future

    monkeypatch.setattr(executors, "worker_pool", Pool)
    monkeypatch.setattr(executors, "worker_context", lambda: SimpleNamespace(Queue=queue.Queue))  # no feeder thread
    spec = StudySpec.from_dict({**SPEC, "seeds": 3, "arms": {"base": {}}})
    events = Recorder()
    executors.run_in_pool(2, [], plan(spec, tmp_path), events)
    assert events.results == {"base__s1": "trained base__s1", "base__s2": "trained base__s2"}
    assert list(events.errors) == ["base__s0"] and "died 3 times" in events.errors["base__s0"]
    assert pools == [2, 1, 1, 1, 1, 2]  # both suspects alone (the killer three times), then the rest
