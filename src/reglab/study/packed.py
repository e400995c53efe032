"""The packed executor: a study's runs that share an architecture trained K at a time on one device.

Runs are grouped by `reglab.train.packed.pack_groups` (same data, model, DropBlock and budget;
seed, the whole `optim` section, the per-run regularizers and the dropout and stochastic-depth
rates and the SAM radius may differ) and by the step they resume at (0 for a fresh run), and each
group is cut into packs of at most K runs, trained by `PackedTrainer`. A run that cannot be packed
(`packing_blocker`: theory objectives) or that ends up alone goes to the `LocalExecutor`
unchanged.

``pack="auto"`` decides by measurement, on any device (`measured_pack_size`): for each group it
times a few steps of a pack (at most as many runs as the free CUDA memory allows by
`estimate_run_bytes`; with several workers, ⌈group / workers⌉ runs, timed with a worker's threads)
and a few steps of its runs trained alone (each arm for its share of the steps, `run_kinds`), and
packs when the pack's time per run is clearly the smaller (`PACK_MARGIN`). The study keeps each
decision (`PackChoices`), so that a resumed study trains its runs as it began.
A group of one run is then a pack of one where that is faster (on CUDA: the captured step). With
several workers, packs and single runs share one pool of worker processes, and the measurement is
a unit of that pool (`PackProbe`) while the group's first runs train alone. ``pack=K`` forces packs of at
most K runs on any device (a single leftover run trains alone).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reglab.config import RunConfig
from reglab.errors import one_line
from reglab.models import build_model
from reglab.study.analysis import finish_analysis
from reglab.study.executors import LocalExecutor, RunEvents, RunTask, run_in_pool, with_device
from reglab.study.workers import report
from reglab.theory.training import build_trainer
from reglab.train.loop import RunResult, Trainer, cached_dataset, planned_steps, resolve_device, torch_threads
from reglab.train.packed import PackedTrainer, pack_groups, packing_blocker, synchronize
from reglab.train.rundir import resume_or_restart

MEMORY_FRACTION = 0.8
"""Share of the free device memory that auto packing plans to fill."""

MEASURE_SHARE = 0.1
"""Auto packing measures a group only where the timed steps are at most this share of its training."""

MEASURE_STEPS = 5
"""Steps per timing of `measured_pack_size` (the solo side takes as many run-steps as the pack)."""

PACK_MARGIN = 0.9
"""Auto packs only where a pack's step per run takes at most this share of a run's step alone: closer
than that the two are at par, and timings on a shared machine flip between them."""


def parse_pack(value: str | int) -> str | int:
    """``"auto"``, ``"off"`` or a positive pack size, from the command line or Python."""
    if value in ("auto", "off"):
        return value
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1 or str(value).strip() != str(size):
        raise ValueError(f"pack: expected auto, off or a positive integer (got {value!r})")
    return size


PARAM_COPIES = 9
"""Copies of a run's parameters that training in a pack holds: the run's own weights, the stacked
weights, their gradient and a scratch buffer, autograd's gradients kept in a CUDA graph's memory
pool, and two optimizer moments, stacked and again in the run's torch.optim state once an epoch has
ended (8.3 measured on CPU for AdamW, without the graph). EMA adds two, SAM one."""


def estimate_run_bytes(model: nn.Module, batch: torch.Tensor, *, extra_copies: int = 0) -> int:
    """Rough training memory of one packed run: its parameters `PARAM_COPIES` (+ `extra_copies`) times
    plus twice every leaf module's output on `batch` (activations kept for backward and their
    gradients)."""
    outputs = []

    def hook(_module: nn.Module, _inputs: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            outputs.append(out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules() if next(m.children(), None) is None]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return (PARAM_COPIES + extra_copies) * params + 2 * sum(outputs)


def memory_pack_size(task: RunTask) -> int | None:
    """Largest pack of runs like `task` that fits the free CUDA memory; None off CUDA."""
    device = resolve_device(task.config.train.device)
    if device.type != "cuda":
        return None
    cfg = task.config
    data = cached_dataset(cfg, device)
    model = build_model(cfg.model, input_shape=data.input_shape, num_outputs=data.num_outputs,
                        reg=cfg.regularize).to(device)
    batch = data.x_train[:cfg.train.batch_size or data.x_train.shape[0]]
    per_run = estimate_run_bytes(model, batch, extra_copies=2 * (cfg.regularize.ema is not None)
                                 + (cfg.regularize.sam_rho > 0))
    free, _total = torch.cuda.mem_get_info(device)
    return max(1, int(MEMORY_FRACTION * free) // per_run)


def solo_step_seconds(cfg: RunConfig, steps: int = 5, *, threads: int | None = None) -> float:
    """Seconds per step of `cfg` trained alone by `Trainer` (after two warm-up steps), with `threads`
    torch threads (as a worker process has)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        trainer = build_trainer(cfg.override({"train.max_steps": 2}))
        while trainer.step < 2:  # an epoch may be shorter than the steps asked for
            trainer._train_epoch()
        warm = trainer.step
        trainer.cfg = cfg.override({"train.max_steps": warm + steps})
        synchronize(trainer.device)
        start = time.perf_counter()
        while trainer.step < warm + steps:
            trainer._train_epoch()
        synchronize(trainer.device)
        return (time.perf_counter() - start) / (trainer.step - warm)
    finally:
        torch.set_num_threads(previous)


def run_kinds(tasks: Sequence[RunTask]) -> list[tuple[RunConfig, int]]:
    """The distinct configurations of `tasks` up to the seed (in a study: its arms), each with its
    number of runs, in first-seen order."""
    kinds: dict[str, tuple[RunConfig, int]] = {}
    for task in tasks:
        key = task.config.override({"seed": 0}).model_dump_json()
        config, count = kinds.get(key, (task.config, 0))
        kinds[key] = (config, count + 1)
    return list(kinds.values())


def mean_solo_step_seconds(kinds: Sequence[tuple[RunConfig, int]], steps_per_run: int, *,
                           threads: int | None = None) -> float:
    """Seconds per step alone, averaged over the runs of `kinds`: each kind is timed over `steps_per_run`
    × its count of steps. A pack pays for its union network (`rate_network`), so it is compared with
    the runs it holds, not with the cheapest of them."""
    steps = [steps_per_run * count for _, count in kinds]
    seconds = [n * solo_step_seconds(cfg, n, threads=threads) for (cfg, _), n in zip(kinds, steps, strict=True)]
    return sum(seconds) / sum(steps)


def measured_pack_size(group: Sequence[RunTask], *, workers: int = 1,
                       report: Callable[[str], None] = lambda text: None) -> int:
    """Pack size for runs of one `pack_groups` group, by measurement; 0 when the runs should train alone.

    With one worker: a pack of the whole group (at most what fits the free CUDA memory) trained in
    this process against its runs trained alone, each kind of run (`run_kinds`: the study's arms) for
    its share of the steps. With several: packs of ⌈group / workers⌉ runs, each trained in a worker
    process like a solo run. Both sides use the runs' own `train.threads`; the runs alone are timed
    without ``train.compile``. Packs where the pack's time
    per run-step is below `PACK_MARGIN` × the runs' mean alone. `report` gets one line with both
    timings and the choice."""
    size = min(len(group), memory_pack_size(group[0]) or len(group))
    threads = group[0].config.train.threads
    if workers > 1:
        size = max(1, -(-size // workers))
    device = resolve_device(group[0].config.train.device)
    # the runs alone without ``train.compile``: compiling each kind of run (tens of seconds on a GPU)
    # would cost more than the measurement; the pack compiles once, for its training too
    kinds = [(cfg.override({"train.compile": False}), count) for cfg, count in run_kinds(group[:size])]
    timed, training = measurement_run_steps(size, device, len(kinds)), group_run_steps(group, device)
    if timed > MEASURE_SHARE * training:
        report(f"--pack auto: {len(group)} runs of {group[0].config.model.name} on {device}: too short to "
               f"measure ({timed} timed run-steps against {training} of training) -> trained alone")
        return 0
    previous = torch.get_num_threads()
    while size >= 1:
        torch.set_num_threads(threads or previous)
        try:
            pack = PackedTrainer([build_trainer(t.config) for t in group[:size]])
            solo_times, pack_times = [], []
            for _ in range(2):  # alternating, so that a burst of load on a shared machine hits both sides
                solo_times.append(mean_solo_step_seconds(kinds, MEASURE_STEPS, threads=threads))
                pack_times.append(pack.time_step(MEASURE_STEPS) / size)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            size //= 2
            continue
        finally:
            torch.set_num_threads(previous)
        solo, packed = min(solo_times), min(pack_times)  # the less disturbed timing of each side
        chosen = size if packed < PACK_MARGIN * solo else 0
        alone = "alone" if len(kinds) == 1 else f"alone (mean of its {len(kinds)} kinds of run)"
        report(f"--pack auto: {len(group)} runs of {group[0].config.model.name} on {device}: "
               f"{1e3 * solo:.2f} ms a step {alone}, {1e3 * packed:.2f} ms per run-step in a pack of {size} "
               f"-> {f'packs of {size}' if chosen else 'trained alone'}")
        return chosen
    return 0


@dataclass
class PackProbe:
    """``--pack auto`` for one `pack_groups` group with several workers: `measured_pack_size` runs in a
    worker process (so the driver never imports what only training needs) while the group's first
    ``workers − 1`` runs, the `pilots`, train alone in the other workers, which would otherwise wait;
    `plan` then packs the `held` rest, or leaves it alone, as measured (`reglab.study.executors.Probe`).
    A group of one run has no pilot: the measurement decides whether it is a pack of one."""

    group: list[RunTask]
    workers: int

    @property
    def pilots(self) -> list[RunTask]:
        return self.group[:min(self.workers - 1, len(self.group) - 1)]

    @property
    def held(self) -> list[RunTask]:
        return self.group[len(self.pilots):]

    def measure(self) -> tuple[int, list[str]]:
        """In a worker: the pack size (0: alone) and the lines that explain it."""
        lines: list[str] = []
        return measured_pack_size(self.group, workers=self.workers, report=lines.append), lines

    def plan(self, result: tuple[int, list[str]], events: RunEvents) -> list[list[RunTask]]:
        """The packs of the held runs, as measured (and kept with the study); the others train alone."""
        size, lines = result
        for line in lines:
            events.note(line)
        PackChoices(events, self.workers).add(self.group, size, lines)
        return chunk_group(self.held, size, "auto")[0]


PACK_CHOICES = "pack_auto"
"""The study store's meta key under which `PackChoices` keeps ``--pack auto``'s decisions."""


class PackChoices:
    """``--pack auto``'s decisions, kept with the study (`RunEvents.recall` / `remember`): a resumed study
    trains a group's runs as its first measurement chose (packs of that size, or alone) instead of timing
    them again. On a shared CPU the two sides are often within `PACK_MARGIN`, and a new timing could
    switch runs started alone, which resume bit for bit, to packs, which round differently. A decision
    holds for the runs it measured, with the configs and device they had then and the same number of
    workers; anything else is measured afresh."""

    def __init__(self, events: RunEvents, workers: int):
        self.events, self.workers = events, workers
        self.recorded: list[dict] = json.loads(events.recall(PACK_CHOICES) or "[]")

    def find(self, group: Sequence[RunTask]) -> dict | None:
        """The decision recorded for every run of `group`, or None."""
        runs = run_fingerprints(group)
        return next((choice for choice in self.recorded if choice["workers"] == self.workers
                     and all(choice["runs"].get(run_id) == digest for run_id, digest in runs.items())), None)

    def add(self, group: Sequence[RunTask], size: int, lines: list[str]) -> None:
        self.recorded.append({"runs": run_fingerprints(group), "workers": self.workers, "size": size, "lines": lines})
        self.events.remember(PACK_CHOICES, json.dumps(self.recorded))

    def recall(self, group: Sequence[RunTask]) -> int | None:
        """The pack size recorded for `group` (0: alone), said in a note; None where none holds."""
        choice = self.find(group)
        if choice is None:
            return None
        for line in choice["lines"]:
            self.events.note(f"{line} (measured when these runs were planned; kept on resuming)")
        return choice["size"]


def run_fingerprints(group: Sequence[RunTask]) -> dict[str, str]:
    """Each run's id with a digest of its config and the device it resolves to."""
    return {t.run_id: hashlib.sha256(f"{resolve_device(t.config.train.device)} {t.config.model_dump_json()}"
                                     .encode()).hexdigest()[:16] for t in group}


def measurement_run_steps(size: int, device: torch.device, kinds: int = 1) -> int:
    """Run-steps `measured_pack_size` trains to time a pack of `size` against its runs alone (of `kinds`
    kinds): two timings a side, each after warm-up (`solo_step_seconds`: 2 steps per kind;
    `PackedTrainer.time_step`: 2, plus 3 before a CUDA graph's capture)."""
    warmup = 2 + (PackedTrainer.WARMUP_STEPS if device.type == "cuda" else 0)
    return 2 * (2 * kinds + MEASURE_STEPS * size) + 2 * (warmup + MEASURE_STEPS) * size


def group_run_steps(group: Sequence[RunTask], device: torch.device) -> int:
    """Training steps left to all runs of a `packable_groups` group (they share data, budget and the step
    they resume at)."""
    cfg = group[0].config
    return len(group) * (planned_steps(cfg.train, cached_dataset(cfg, device).x_train.shape[0]) - resume_step(group[0]))


def plan_packs(tasks: Sequence[RunTask], pack: str | int, *,
               decide: Callable[[Sequence[RunTask]], int] = measured_pack_size,
               ) -> tuple[list[list[RunTask]], list[RunTask]]:
    """Split `tasks` into packs and the runs that train alone, keeping the plan's order.

    ``pack=K``: packs of at most K runs, a single leftover run alone. ``"auto"``: `decide(group)` gives
    each group's pack size (0: alone), and a pack of one is kept."""
    if pack == "off":
        return [], list(tasks)
    packable, alone = split_packable(tasks)
    packs = []
    for group in packable_groups(packable):
        group_packs, group_alone = chunk_group(group, pack if isinstance(pack, int) else decide(group), pack)
        packs += group_packs
        alone += group_alone
    solo = {t.run_id for t in alone}
    return packs, [t for t in tasks if t.run_id in solo]


def split_packable(tasks: Sequence[RunTask]) -> tuple[list[RunTask], list[RunTask]]:
    """(runs that may share a pack, runs that train alone: those with a `packing_blocker`)."""
    alone, packable = [], []
    for task in tasks:
        (alone if packing_blocker(task.config) else packable).append(task)
    return packable, alone


def packable_groups(packable: Sequence[RunTask]) -> list[list[RunTask]]:
    """`packable` by `pack_groups` and, inside one, by the step its runs resume at (`resume_step`; 0 for a
    fresh run): the runs of a pack take their steps together. Each group in plan order."""
    groups = []
    for indices in pack_groups([t.config for t in packable]):
        by_step: dict[int, list[RunTask]] = {}
        for i in indices:
            by_step.setdefault(resume_step(packable[i]), []).append(packable[i])
        groups += by_step.values()
    return groups


def resume_step(task: RunTask) -> int:
    """The step a run resumes at: its checkpoint's, read without loading the tensors (0 without one, or
    for one torch cannot read, which the run sets aside when it opens its directory: `open_trainer`)."""
    path = task.run_dir / "checkpoint.pt"
    if not path.is_file():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:  # damaged in any way: `open_trainer` deals with it
        return 0


def chunk_group(group: list[RunTask], size: int, pack: str | int) -> tuple[list[list[RunTask]], list[RunTask]]:
    """(packs of at most `size` runs, runs alone) of one group: all alone for size 0; a leftover single run
    trains alone under a forced ``pack=K`` (K > 1) and is a pack of one under ``"auto"``, which measured it, and
    under ``pack=1``, which asks for packs of one."""
    if size < 1:
        return [], list(group)
    chunks = [group[start:start + size] for start in range(0, len(group), size)]
    if pack == "auto" or size == 1 or len(chunks[-1]) > 1:  # pack=1 asks for packs of one: every run alike
        return chunks, []
    return chunks[:-1], chunks[-1]


def _recalled_or_measured(group: Sequence[RunTask], choices: PackChoices) -> int:
    """The study's recorded decision for `group`, else `measured_pack_size` in this process (and recorded);
    0 (alone) where measuring fails, e.g. on the runs' bad data, so that each run fails on its own and the
    rest of the study trains (as with several workers)."""
    recalled = choices.recall(group)
    if recalled is not None:
        return recalled
    lines: list[str] = []
    try:
        size = measured_pack_size(group, report=lines.append)
    except Exception as err:
        choices.events.note(f"measuring how to train {len(group)} runs failed ({one_line(err)}): they train alone")
        return 0
    for line in lines:
        choices.events.note(line)
    choices.add(group, size, lines)
    return size


class PackedExecutor:
    """Trains packs with `PackedTrainer` and the remaining runs like `LocalExecutor`.

    `workers` and `device` are the `LocalExecutor` options (`device` also applies to the packs);
    `pack` is ``"auto"``, ``"off"`` or the largest pack size. With one worker the packs train in this
    process, then the other runs; with several, packs (largest first) and single runs share one
    pool of worker processes.
    """

    def __init__(self, workers: int = 1, *, device: str | None = None, pack: str | int = "auto"):
        self.pack = parse_pack(pack)
        self.device = device
        self.local = LocalExecutor(workers, device=device)

    def execute(self, tasks: Sequence[RunTask], events: RunEvents) -> None:
        workers, tasks = self.local.workers, [with_device(t, self.device) for t in tasks]
        choices = PackChoices(events, workers) if self.pack == "auto" else None
        if workers > 1 and self.pack == "auto":  # measured in a worker while pilots train: `PackProbe`
            packs, probes = [], []
            for group in packable_groups(split_packable(tasks)[0]):
                size = choices.recall(group)
                if size is None:
                    probes.append(PackProbe(group, workers))
                else:
                    packs += chunk_group(group, size, "auto")[0]
            packed = {t.run_id for pack in packs for t in pack}
            run_in_pool(workers, packs, [t for t in tasks if t.run_id not in packed], events,
                        pack_worker=_worker_pack, probes=probes)
            return
        packs, alone = plan_packs(tasks, self.pack, decide=lambda group: _recalled_or_measured(group, choices))
        if workers > 1 and packs:
            run_in_pool(workers, packs, alone, events, pack_worker=_worker_pack)
            return
        for pack in packs:
            train_pack(pack, events)
        self.local.execute(alone, events)

class _Relay:
    """`RunEvents` of a pack in a worker process: progress to the driver, results kept."""

    def __init__(self):
        self.outcomes = {}

    def started(self, task: RunTask) -> None:
        report("started", task.run_id)

    def epoch(self, task: RunTask, metrics: dict) -> None:
        report("epoch", task.run_id, metrics)

    def finished(self, task: RunTask, result: RunResult) -> None:
        self.outcomes[task.run_id] = (True, result)

    def failed(self, task: RunTask, error: str) -> None:
        self.outcomes[task.run_id] = (False, error)


def _worker_pack(tasks: list[RunTask]) -> list[tuple[bool, Any]]:
    """Train one pack in a worker process; each run's ``(ok, RunResult or one-line error)``."""
    relay = _Relay()
    train_pack(tasks, relay)
    return [relay.outcomes.get(t.run_id, (False, "pack ended without a result")) for t in tasks]


def train_pack(tasks: Sequence[RunTask], events: RunEvents) -> None:
    """Train one pack, each run resuming from the checkpoint in its directory. Out of CUDA memory, the
    runs still going start again in two halves (each halved again as needed, down to single runs), from
    their last checkpoints; any other error ends every run still going as failed (a re-run resumes them)."""
    for task in tasks:
        events.started(task)
    _train_pack(list(tasks), events)


def _train_pack(tasks: list[RunTask], events: RunEvents) -> None:
    """Open the runs' directories, then train the runs at each step as one pack (planned packs share
    theirs; a checkpoint that changed since the plan only splits the pack)."""
    by_step: dict[int, list[tuple[RunTask, Trainer]]] = {}
    with torch_threads(tasks[0].config.train.threads):  # the runs' own thread count (one pack group)
        for task in tasks:
            try:
                trainer = open_trainer(task)
            except Exception as err:  # e.g. a directory started with another config: this run alone fails
                events.failed(task, one_line(err))
                continue
            by_step.setdefault(trainer.step, []).append((task, trainer))
    groups = list(by_step.values())
    del by_step
    while groups:
        halves = _train_group(groups.pop(0), events)
        if halves and torch.cuda.is_available():
            torch.cuda.empty_cache()  # the group's memory is free now
        for half in halves:
            _train_pack(half, events)


def _train_group(runs: list[tuple[RunTask, Trainer]], events: RunEvents) -> list[list[RunTask]]:
    """Train opened runs at one step as a pack; returns the two halves to train again after running out
    of CUDA memory (none otherwise: a run that did not finish failed)."""
    tasks = [task for task, _ in runs]
    ended: set[int] = set()

    def on_result(i: int, result: RunResult) -> None:
        ended.add(i)
        events.finished(tasks[i], finish_analysis(tasks[i], result))

    try:
        with torch_threads(tasks[0].config.train.threads):
            PackedTrainer([trainer for _, trainer in runs]).fit(
                [t.run_dir for t in tasks], on_epoch=lambda i, metrics: events.epoch(tasks[i], dict(metrics)),
                on_result=on_result)
    except torch.cuda.OutOfMemoryError as err:
        out_of_memory, message = True, one_line(err)
    except Exception as err:  # one bad pack must not end the study
        out_of_memory, message = False, one_line(err)
    else:
        return []
    runs.clear()  # the trainers' memory goes before the halves start
    left = [t for i, t in enumerate(tasks) if i not in ended]
    if not (out_of_memory and len(left) > 1):
        for task in left:
            events.failed(task, message)
        return []
    return [left[:len(left) // 2], left[len(left) // 2:]]


def open_trainer(task: RunTask) -> Trainer:
    """A task's `Trainer` with its run directory opened (`Trainer.open_run_dir`): resumed from the
    checkpoint there, if any, or started afresh where that checkpoint is damaged (as `run_task` does)."""
    def attempt(resume: bool) -> Trainer:
        trainer = build_trainer(task.config)
        trainer.open_run_dir(task.run_dir, resume=resume)
        return trainer

    return resume_or_restart(task.run_dir, attempt)
