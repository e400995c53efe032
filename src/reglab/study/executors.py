"""Executors: how the runs of a study are carried out (in-process, a process pool, packed, Ray).

An executor receives `RunTask`s and reports through `RunEvents`, always from the driver process;
the events object (the study runner) is the only writer of the study store. An executor never
skips or reorders results: every task ends in exactly one `finished` or `failed` call, unless the
driver itself is interrupted, in which case the next run of the study resumes the task.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import inspect
import queue
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reglab.config import ConfigError, RunConfig
from reglab.errors import one_line
from reglab.study.workers import report, worker_context, worker_pool
from reglab.train.loop import RunResult


@dataclass(frozen=True)
class RunTask:
    run_id: str
    arm: str
    seed: int
    config: RunConfig
    run_dir: Path
    analysis: dict | None = None  # the study's [analysis], run at the end of training (reglab.study.analysis)


class RunEvents(Protocol):
    """Implemented by the study runner; called by executors from the driver process only."""

    def started(self, task: RunTask) -> None: ...
    def epoch(self, task: RunTask, metrics: dict) -> None: ...  # progress only
    def finished(self, task: RunTask, result: RunResult) -> None: ...
    def failed(self, task: RunTask, error: str) -> None: ...
    def note(self, text: str) -> None: ...  # one line on how the runs will train, e.g. a packing decision
    def recall(self, key: str) -> str | None: ...  # what `remember` kept under `key` for this study, if anything
    def remember(self, key: str, value: str) -> None: ...  # kept with the study, for its next invocation


class Executor(Protocol):
    def execute(self, tasks: Sequence[RunTask], events: RunEvents) -> None: ...


class Probe(Protocol):
    """Runs whose training plan a measurement decides (`reglab.study.packed.PackProbe`): `measure` runs in
    a worker while the `pilots` train alone in the others; `plan(its result, events)` then turns the
    `held` runs into packs; the held runs it leaves out train alone."""

    pilots: list[RunTask]
    held: list[RunTask]

    def measure(self) -> Any: ...
    def plan(self, result: Any, events: RunEvents) -> list[list[RunTask]]: ...


def held(executor: Executor | None) -> AbstractContextManager:
    """`executor` itself where it is a context manager, which keeps what its `execute` calls share (Ray's
    connection) until the block ends; else a block that does nothing."""
    return executor if isinstance(executor, AbstractContextManager) else nullcontext()


def with_device(task: RunTask, device: str | None) -> RunTask:
    if device is None or task.config.train.device == device:
        return task
    config = task.config.override({"train.device": device})
    return RunTask(task.run_id, task.arm, task.seed, config, task.run_dir, task.analysis)


def run_task(task: RunTask, on_epoch: Callable[[dict], None]) -> RunResult:
    """Train one task into its run directory (resumes from a checkpoint left there), then analyse it."""
    from reglab.study.analysis import finish_analysis
    from reglab.theory.training import train_run
    from reglab.train.rundir import resume_or_restart

    def callback(_epoch: int, _model: object, metrics: dict) -> None:  # progress only: adds no metrics
        on_epoch(dict(metrics))

    result = resume_or_restart(task.run_dir, lambda resume: train_run(task.config, run_dir=task.run_dir,
                                                                      callbacks=[callback], resume=resume))
    return finish_analysis(task, result)


def deliver(events: RunEvents, task: RunTask, started: set[str], outcome: Callable[[], tuple[bool, Any]]) -> None:
    """Report a task's end: `started` first if it never arrived, then `finished` or `failed`.

    `outcome()` returns ``(True, RunResult)`` or ``(False, one-line error)``; if it raises (the
    worker died), the run failed with that error.
    """
    if task.run_id not in started:
        started.add(task.run_id)
        events.started(task)
    try:
        ok, value = outcome()
    except Exception as err:
        ok, value = False, one_line(err)
    if ok:
        events.finished(task, value)
    else:
        events.failed(task, value)


# ------------------------------------------------------------------------------------------ local
class LocalExecutor:
    """Runs tasks on this machine: in-process one after another, or in `workers` spawned processes.

    Every run trains with its own ``train.threads`` torch threads, in-process or in a worker, so
    its numbers do not depend on the path. An exception inside a run becomes `failed` with a
    one-line error and the study goes on; a diverged run is a result; a worker process that dies
    is replaced and its run retried from its checkpoint.
    `device` (e.g. "cpu") overrides every task's ``train.device``.
    """

    def __init__(self, workers: int = 1, *, device: str | None = None):
        if workers < 1:
            raise ConfigError(f"workers: must be at least 1 (got {workers})")
        self.workers, self.device = workers, device

    def execute(self, tasks: Sequence[RunTask], events: RunEvents) -> None:
        tasks = [with_device(t, self.device) for t in tasks]
        if self.workers == 1 or len(tasks) <= 1:
            self._serial(tasks, events)
        else:
            run_in_pool(self.workers, [], tasks, events)

    @staticmethod
    def _serial(tasks: Sequence[RunTask], events: RunEvents) -> None:
        for task in tasks:
            events.started(task)
            try:
                result = run_task(task, lambda metrics, task=task: events.epoch(task, metrics))
            except Exception as err:  # one bad run must not end the study
                events.failed(task, one_line(err))
            else:
                events.finished(task, result)


def run_in_pool(workers: int, packs: Sequence[Sequence[RunTask]], alone: Sequence[RunTask], events: RunEvents, *,
                pack_worker: Callable[[list[RunTask]], list[tuple[bool, Any]]] | None = None,
                probes: Sequence[Probe] = ()) -> None:
    """Train packs (each by `pack_worker` in one worker) and single runs in `workers` processes.

    Each of `probes` measures in a worker; its held runs, which are among `alone`, wait until it has
    reported and been planned, while its pilots and the other runs train (`_Queue` gives the order).
    A worker that dies (killed, out of memory) breaks the pool, and the pool does not say which one
    died. The runs that had started are retried one by one, from their checkpoints: where one run had
    started, in the next pool (its death counts, `settle_lost`); where several had, each alone in a pool
    of one worker first, so that a death names its run (a run whose worker dies `MAX_WORKER_DEATHS`
    times fails; the others, and runs squeezed out of memory by their neighbours, finish). Units that
    had not started are simply queued again, and the held runs of a probe that had not reported train
    alone."""
    deaths: dict[str, int] = {}
    queue = _Queue([list(p) for p in packs], probes, alone)
    while queue:
        queue, suspects = _pool_round(workers, queue, events, deaths, pack_worker)
        for task in suspects:
            isolated = _Queue([], (), [task])
            while isolated:
                isolated, _ = _pool_round(1, isolated, events, deaths, pack_worker)


class _Queue:
    """The units of a pool round in the order they go to free workers: packs (largest first), then
    probes, then single runs in plan order, skipping those held by a probe that has not reported."""

    def __init__(self, packs: list[list[RunTask]], probes: Sequence[Probe], alone: Sequence[RunTask]):
        self.packs = sorted(packs, key=len, reverse=True)
        self.probes = list(probes)
        self.alone = list(alone)
        self.held = {t.run_id for probe in probes for t in probe.held}

    def __bool__(self) -> bool:
        return bool(self.packs or self.probes or self.alone)

    def pop(self) -> tuple[str, Any] | None:
        """The next unit to dispatch, ``("pack", runs)``, ``("probe", probe)`` or ``("run", run)``; None
        while only held runs are left."""
        if self.packs:
            return "pack", self.packs.pop(0)
        if self.probes:
            return "probe", self.probes.pop(0)
        ready = next((i for i, t in enumerate(self.alone) if t.run_id not in self.held), None)
        return None if ready is None else ("run", self.alone.pop(ready))

    def put_back(self, unit: tuple[str, Any]) -> None:
        """Return a unit that `pop` gave but that could not be dispatched; it goes first again."""
        kind, payload = unit
        {"pack": self.packs, "probe": self.probes, "run": self.alone}[kind].insert(0, payload)

    def planned(self, probe: Probe, packs: list[list[RunTask]]) -> None:
        """`probe` has reported: its runs in `packs` leave the single runs, the rest are ready."""
        packed = {t.run_id for pack in packs for t in pack}
        self.alone = [t for t in self.alone if t.run_id not in packed]
        self.packs = sorted(self.packs + packs, key=len, reverse=True)
        self.held -= {t.run_id for t in probe.held}

    def release(self) -> _Queue:
        """What a broken pool leaves for the next: unplanned probes' held runs train alone."""
        return _Queue(self.packs, (), self.alone)


def _pool_round(workers: int, todo: _Queue, events: RunEvents, deaths: dict[str, int],
                pack_worker: Callable | None) -> tuple[_Queue, list[RunTask]]:
    """One process pool; returns what is left to run because the pool broke (empty if it did not) and,
    where several started runs were lost with it, those runs: the suspects, to run alone first."""
    messages = worker_context().Queue()
    started: set[str] = set()
    by_id = {t.run_id: t for unit in (*todo.packs, *([t] for t in todo.alone)) for t in unit}
    pending_ids = set(by_id)  # tasks whose result has not arrived: their epoch messages count
    lost: list[tuple[list[RunTask], bool]] = []  # (unit, packed) of the runs a broken pool took with it
    pool_broke = False  # the pool broke: nothing more is dispatched to it
    running: dict[cf.Future, tuple[str, Any]] = {}

    def drain(timeout: float = 0.0) -> None:
        while True:
            try:
                kind, run_id, payload = messages.get(timeout=timeout)
            except queue.Empty:
                return
            timeout = 0.0
            if kind == "started" and run_id not in started:
                started.add(run_id)
                events.started(by_id[run_id])
            elif kind == "epoch" and run_id in pending_ids:
                events.epoch(by_id[run_id], payload)

    with worker_pool(workers, messages) as pool:

        def dispatch() -> None:  # one unit per free worker, so that a probe's plan can still go first
            nonlocal pool_broke
            while not pool_broke and len(running) < workers and (unit := todo.pop()) is not None:
                kind, payload = unit
                fn, *args = (payload.measure,) if kind == "probe" else (
                    pack_worker if kind == "pack" else _worker_run, payload)
                try:
                    running[pool.submit(fn, *args)] = unit
                except BrokenProcessPool:  # a worker died since the last result: the unit waits for the next pool
                    todo.put_back(unit)
                    pool_broke = True

        try:
            dispatch()
            while running:
                done, _ = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                drain()
                for future in done:
                    kind, payload = running.pop(future)
                    if kind == "probe":
                        pool_broke |= _settle_probe(payload, future, todo, events)
                        continue
                    unit, packed = (payload, True) if kind == "pack" else ([payload], False)
                    pending_ids.difference_update(t.run_id for t in unit)
                    if isinstance(future.exception(), BrokenProcessPool):
                        lost.append((unit, packed))
                        pool_broke = True
                        continue
                    for i, task in enumerate(unit):
                        outcome = (lambda future=future, i=i: future.result()[i]) if packed else future.result
                        deliver(events, task, started, outcome)
                dispatch()
        except BaseException:  # e.g. Ctrl-C: do not wait for queued work
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            drain(timeout=0.1 if pool_broke else 0.0)
    unstarted = [unit for unit, packed in lost if packed and not any(t.run_id in started for t in unit)]
    broken = [t for unit, packed in lost if not (packed and unit in unstarted) for t in unit]
    left = todo.release()
    left.packs = sorted(left.packs + unstarted, key=len, reverse=True)
    suspects = [t for t in broken if t.run_id in started]
    if len(suspects) > 1:  # any one of them (or none) killed the pool: no death counts until each runs alone
        left.alone = [t for t in broken if t.run_id not in started] + left.alone
        return left, suspects
    left.alone = settle_lost(broken, started, deaths, events) + left.alone
    return left, []


def _settle_probe(probe: Probe, future: cf.Future, todo: _Queue, events: RunEvents) -> bool:
    """Plan a probe's held runs by its measurement; alone where the measurement failed. Returns whether
    the pool broke: its held runs then train alone in the next (`_Queue.release`)."""
    error = future.exception()
    if isinstance(error, BrokenProcessPool):
        return True
    if error is not None:
        events.note(f"measuring how to train {len(probe.held)} runs failed ({one_line(error)}): they train alone")
        packs: list[list[RunTask]] = []
    else:
        packs = probe.plan(future.result(), events)
    todo.planned(probe, packs)
    return False


MAX_WORKER_DEATHS = 3
"""A run whose worker process dies this many times is recorded as failed."""


def settle_lost(lost: Sequence[RunTask], started: set[str], deaths: dict[str, int], events: RunEvents
                ) -> list[RunTask]:
    """The runs of a broken pool to run again: those that never started (not a failure), and those that had
    started while their worker died fewer than `MAX_WORKER_DEATHS` times (they resume from their last
    checkpoint); the others are recorded as failed."""
    retry = []
    for task in lost:
        if task.run_id not in started:
            retry.append(task)
            continue
        deaths[task.run_id] = deaths.get(task.run_id, 0) + 1
        if deaths[task.run_id] >= MAX_WORKER_DEATHS:
            events.failed(task, f"WorkerDied: its worker process died {deaths[task.run_id]} times "
                                "(killed, or out of memory?); rerun the study to try again")
        else:
            retry.append(task)
    return retry


def _worker_run(task: RunTask) -> tuple[bool, Any]:
    report("started", task.run_id)
    try:
        return True, run_task(task, lambda metrics: report("epoch", task.run_id, metrics))
    except Exception as err:
        traceback.print_exc()
        return False, one_line(err)


# --------------------------------------------------------------------------------------- registry
ExecutorFactory = Callable[..., Executor]
EXECUTORS: dict[str, ExecutorFactory | str] = {"local": LocalExecutor,
                                                "ray": "reglab.study.ray_executor:RayExecutor",
                                                "packed": "reglab.study.packed:PackedExecutor"}
"""Executor factories by name; a value may be ``"module:attr"`` to import lazily. Factories take
keyword options ``workers`` and ``device``, and may take more (e.g. Ray's ``address``)."""


def register_executor(name: str, factory: ExecutorFactory | str) -> None:
    EXECUTORS[name] = factory


def make_executor(name: str = "local", *, chosen: str | None = None, **options: Any) -> Executor:
    """Build a registered executor, dropping options given as None; refuses options it does not take,
    naming the executor as `chosen` where given: the one the user asked for (local, where packing made it
    packed)."""
    if name not in EXECUTORS:
        raise ConfigError(f"executor: unknown {name!r} (executors: {', '.join(EXECUTORS)})")
    factory = EXECUTORS[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    options = {k: v for k, v in options.items() if v is not None}
    accepted = inspect.signature(factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    if unknown := [k for k in options if k not in accepted and not takes_any]:
        raise ConfigError(f"executor {chosen or name}: does not take {unknown[0]} (it takes: {', '.join(accepted)})")
    return factory(**options)
