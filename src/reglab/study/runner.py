"""Running a study: plan arm × seed runs, reconcile them with the store, execute what is left.

Re-running a study resumes it: finished runs (done / diverged) are kept, every other run
(pending, running when the driver was killed, failed) is executed again and continues from its
last checkpoint. A finished run that lacks the spec's [analysis] (or has it with other settings)
is executed again too: it resumes from its final checkpoint and is analysed. The analyses are not
part of the spec's hash; any other change to the spec is refused unless `force=True`, which adopts
the new spec: runs whose resolved config is unchanged are kept, runs whose config changed
are re-run from scratch, and runs that are no longer in the spec are deleted (row and directory).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reglab.config import ConfigError, identity_changes
from reglab.provenance import record
from reglab.study.analysis import analysis_current
from reglab.study.executors import Executor, LocalExecutor, RunTask
from reglab.study.progress import StudyProgress
from reglab.study.results import Study, read_study
from reglab.study.spec import StudySpec, content_hash, load_spec, run_id, same_run, trained_part
from reglab.study.store import DB_NAME, FINISHED, SEARCH_MARKER, StudyStore
from reglab.study.tracking import LoggedRun, Tracker, check_sinks, open_tracker
from reglab.train.loop import RunResult
from reglab.train.rundir import (
    DamagedFile,
    check_directory,
    clean_json,
    make_directory,
    metrics_intact,
    read_config,
    read_metrics,
)


@dataclass
class StudyResult(Study):
    """The study as loaded after running, plus what this invocation did."""

    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    analysed: list[str] = field(default_factory=list)  # of `executed`: trained before, analysed only now
    seconds: float = 0.0
    tracker: Tracker = field(default_factory=Tracker, repr=False)


def plan(spec: StudySpec, out_dir: Path) -> list[RunTask]:
    """Every run of the study, seed-major (all arms of seed 0 first) so partial results stay paired."""
    analysis = spec.analysis.model_dump(mode="json") if spec.analysis is not None else None
    return [RunTask(run_id(arm, seed), arm, seed, spec.arm_config(arm, seed),
                    out_dir / "runs" / run_id(arm, seed), analysis) for seed in spec.seed_list for arm in spec.arms]


def _changes(old: dict, new: dict) -> str:
    keys = [k for k in ("name", "description", "seeds", "baseline", "base") if old.get(k) != new.get(k)]
    old_arms, new_arms = old.get("arms", {}), new.get("arms", {})
    keys += [f"arms.{a}" for a in {**old_arms, **new_arms} if old_arms.get(a) != new_arms.get(a)]
    return ", ".join(keys) or "defaults of the run config"


def reconcile(store: StudyStore, spec: StudySpec, tasks: list[RunTask], *, force: bool
              ) -> tuple[list[RunTask], set[str]]:
    """Bring the store in line with `spec`; return the tasks still to run and, of them, the runs that
    trained to the end before and only need the analysis the spec asks for (they resume, not retrain)."""
    if store.meta("tune") is not None:  # a search's runs are its trials: never adopt (and delete) them
        raise ConfigError(f"{store.out_dir}: holds a `reglab tune`/`sweep` search, not a compare study; use another "
                          "--out (`reglab compare --best-of` takes its best configuration)")
    old, rows = store.spec(), {r.run_id: r for r in store.runs()}
    hashes = {t.run_id: content_hash(t.config.to_dict()) for t in tasks}
    configs = {t.run_id: t.config.to_dict() for t in tasks}
    changed = [i for i, row in rows.items() if i in configs and not same_run(row.config, configs[i])]
    stale = set(rows) - set(hashes)
    if not force and old is not None and content_hash(trained_part(old)) != spec.spec_hash:
        raise ConfigError(f"{store.out_dir}: the study spec changed since it was started "
                          f"({_changes(trained_part(old), trained_part(spec.to_dict()))}); use --force "
                          "(force=True) to re-run the changed runs, or another --out")
    if not force and (changed or stale):
        raise ConfigError(f"{store.out_dir}: the resolved configs of {len(changed) + len(stale)} runs "
                          "changed (reglab's defaults changed?); use --force (force=True) to re-run them")
    for run in stale:
        store.delete_run(run)
        shutil.rmtree(store.run_dir(run), ignore_errors=True)
    store.set_spec(spec.to_dict(), spec.spec_hash)
    todo, analyse_only = [], set()
    for position, task in enumerate(tasks):
        row = rows.get(task.run_id)
        status = row.status if row is not None and task.run_id not in changed else None
        if (row is None or task.run_id in changed) and holds_own_run(task):  # on disk with this very config
            status = adopt(store, task, position)  # (unindexed, or indexed with a stale one): keep it
        elif row is None or task.run_id in changed:
            shutil.rmtree(task.run_dir, ignore_errors=True)
            store.add_run(task.run_id, task.arm, task.seed, position, task.config.to_dict(),
                          hashes[task.run_id])
        elif row.position != position or row.arm != task.arm:
            store.set_position(task.run_id, task.arm, position)
        if status in FINISHED:
            intact = (task.run_dir / "summary.json").exists() and metrics_intact(task.run_dir)
            if intact and (status != "done" or analysis_current(task.run_dir, task.analysis)):
                continue
            if intact:
                analyse_only.add(task.run_id)
            store.mark_pending(task.run_id)  # its files were lost or damaged, or its analysis is missing: run again
        todo.append(task)
    return todo, analyse_only


def check_index_present(out_dir: Path, remedy: str) -> None:
    """Refuse to start a new, empty index where study.db is missing or empty but runs/ holds run
    directories: reconciling them against an empty index would delete every one. `remedy`: what to do."""
    path = out_dir / DB_NAME
    if path.exists() and path.stat().st_size > 0:
        return
    runs = out_dir / "runs"
    held = [d for d in runs.iterdir() if (d / "config.json").exists()] if runs.is_dir() else []
    if held:
        raise DamagedFile(path, f"{'empty' if path.exists() else 'missing'}, but {runs} holds {len(held)} run "
                                f"directories; {remedy}")


def index_readable(out_dir: Path) -> bool:
    """Whether the study's index (study.db) exists and opens as a sound study index."""
    try:
        StudyStore(out_dir, create=False).close()
    except (DamagedFile, FileNotFoundError):
        return False
    return True


def rebuild_index(out_dir: Path, spec: StudySpec, tasks: list[RunTask]) -> str:
    """Set the study's damaged index aside (``study.db.damaged``, or ``.damaged.N`` where that is
    taken) and write a new one from the run directories: a run whose directory holds summary.json and
    the run's own config.json counts as finished, every other run as pending (it resumes from its
    checkpoint). The new index is written in a temporary folder and renamed into place whole, so an
    interrupted rebuild leaves no partial index (whose missing runs a resume would train afresh).
    Refused where the run directories hold runs `spec` does not plan (`check_rebuild_spec`). Returns one
    line saying what it did."""
    check_rebuild_spec(out_dir, tasks)
    building = Path(tempfile.mkdtemp(prefix=".rebuild-", dir=out_dir))
    try:
        with StudyStore(building) as store:
            store.set_spec(spec.to_dict(), spec.spec_hash)
            for position, task in enumerate(tasks):
                adopt(store, task, position)
            finished = sum(row.status in FINISHED for row in store.runs())
        suffix, n = ".damaged", 0
        while (out_dir / f"{DB_NAME}{suffix}").exists():
            n += 1
            suffix = f".damaged.{n}"
        old = (out_dir / DB_NAME).exists()
        for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
            if (out_dir / name).exists():
                (out_dir / name).replace(out_dir / f"{name}{suffix}")
        for name in (f"{DB_NAME}-wal", f"{DB_NAME}-shm", DB_NAME):  # the database file last
            if (building / name).exists():
                (building / name).replace(out_dir / name)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    kept = f"the damaged one set aside as {DB_NAME}{suffix}" if old else "there was none"
    return (f"{DB_NAME}: index rebuilt from the run directories ({finished} of {len(tasks)} runs finished; "
            f"{kept})")


def set_aside_files(tasks: Sequence[RunTask]) -> dict[Path, tuple[int, int]]:
    """Every run file set aside as damaged (`resume_or_restart`), with its inode and change time."""
    found = {}
    for task in tasks:
        for path in task.run_dir.glob("*.damaged*") if task.run_dir.is_dir() else ():
            stat = path.stat()
            found[path] = (stat.st_ino, stat.st_ctime_ns)
    return found


def newly_set_aside(tasks: Sequence[RunTask], before: dict[Path, tuple[int, int]]) -> list[str]:
    """One line per run file set aside since `before` (`set_aside_files`): the run found its checkpoint,
    metrics or config unreadable and trained again from the start."""
    run_of = {task.run_dir: task.run_id for task in tasks}
    return [f"{run_of[path.parent]}: {path.name.split('.damaged')[0]} was damaged; set aside as {path.name}, the "
            "run trained again from the start"
            for path, key in sorted(set_aside_files(tasks).items()) if before.get(path) != key]


def check_rebuild_spec(out_dir: Path, tasks: list[RunTask]) -> None:
    """Refuse to index the run directories under a spec they were not trained with: every directory with a
    readable config.json must be a run of `tasks` holding that run's config (an index of another spec would
    call them changed, and `--force` would then train them again). A damaged config.json is the run's own
    problem: the rebuilt index trains that run again."""
    if (out_dir / SEARCH_MARKER).exists():
        raise ConfigError(f"{out_dir}: holds a `reglab tune` search, whose index cannot be rebuilt from its run "
                          "directories (its trials are only there); restore study.db from a copy, or search into "
                          "another --out")
    planned = {t.run_id: t for t in tasks}
    found: dict[str, dict] = {}
    for folder in sorted((out_dir / "runs").glob("*")):
        try:
            found[folder.name] = read_config(folder)
        except (OSError, ValueError):  # no config.json, or a damaged one
            continue
    differ = {name: identity_changes(config, planned[name].config.to_dict()) if name in planned else None
              for name, config in found.items()}
    differ = {name: changes for name, changes in differ.items() if changes is None or changes}
    if not differ:
        return
    name, changes = next(iter(differ.items()))
    example = f"{name} is no run of SPEC" if changes is None else f"{name}: " + ", ".join(
        f"{k} {a!r} there, {b!r} in SPEC" for k, (a, b) in list(changes.items())[:3])
    raise ConfigError(f"{out_dir}: --rebuild-index needs the spec the study was run with: {len(differ)} of its "
                      f"{len(found)} run directories hold other runs ({example}); nothing was changed")


def adopt(store: StudyStore, task: RunTask, position: int) -> str:
    """Index `task`'s run from its directory and return its status there: finished where it holds the
    run's own config.json and a finished summary.json, else "pending" (it resumes from its checkpoint,
    if any)."""
    config = task.config.to_dict()
    store.add_run(task.run_id, task.arm, task.seed, position, config, content_hash(config))
    try:
        summary = json.loads((task.run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return "pending"
    if holds_own_run(task) and isinstance(summary, dict) and summary.get("status") in FINISHED:
        store.mark_finished(task.run_id, summary["status"], summary.get("seconds") or 0.0,
                            {k: v for k, v in summary.items() if k not in ("epochs", "config")})
        return summary["status"]
    return "pending"


def holds_own_run(task: RunTask) -> bool:
    """Whether `task.run_dir` holds this very run (its config.json reads as `task.config`)."""
    try:
        return same_run(read_config(task.run_dir), task.config.to_dict())
    except (OSError, ValueError):
        return False


@contextmanager
def study_lock(out_dir: Path) -> Iterator[None]:
    """One driver per study directory (released by the OS if the driver dies). A run's own directory
    (config.json, no study.db), which a study would fill with its files, is refused before anything is written."""
    check_directory(out_dir, "a study directory")
    if (out_dir / "config.json").is_file() and not (out_dir / DB_NAME).exists():
        raise ConfigError(f"{out_dir}: holds a run (config.json), not a study; use another --out")
    make_directory(out_dir, "a study directory")
    with open(out_dir / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{out_dir}: another reglab process is running this study") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def finished_runs(store: StudyStore) -> list[LoggedRun]:
    """The runs the store holds as finished, with their per-epoch records, for the tracking sinks."""
    return [LoggedRun(r.run_id, r.arm, r.seed, r.status, r.config,
                      read_metrics(store.run_dir(r.run_id) / "metrics.jsonl"))
            for r in store.runs() if r.status in FINISHED]


class StoreEvents:
    """The `RunEvents` of a study: records every event in the store, then in the tracker; shows progress."""

    def __init__(self, store: StudyStore, progress: StudyProgress, tracker: Tracker):
        self.store, self.progress, self.tracker = store, progress, tracker
        self.executed: list[str] = []

    def started(self, task: RunTask) -> None:
        self.store.mark_running(task.run_id)
        self.progress.started(task)

    def epoch(self, task: RunTask, metrics: dict) -> None:
        self.progress.epoch(task, metrics)

    def finished(self, task: RunTask, result: RunResult) -> None:
        summary = {k: v for k, v in result.to_dict().items() if k not in ("epochs", "config")}
        self.store.mark_finished(task.run_id, result.status, result.seconds, summary)
        self.tracker.log_run(LoggedRun(task.run_id, task.arm, task.seed, result.status, task.config.to_dict(),
                                       clean_json(result.epochs)))
        self.executed.append(task.run_id)
        self.progress.finished(task, result)

    def note(self, text: str) -> None:
        self.progress.note(text)

    def recall(self, key: str) -> str | None:
        return self.store.meta(key)

    def remember(self, key: str, value: str) -> None:
        self.store.set_meta(key, value)

    def failed(self, task: RunTask, error: str) -> None:
        self.store.mark_failed(task.run_id, error)
        self.executed.append(task.run_id)
        self.progress.failed(task, error)


def run_study(spec: StudySpec | str | Path, out_dir: str | Path, *, executor: Executor | None = None,
              force: bool = False, progress: bool = True, log: str | list[str] | Tracker | None = None,
              rebuild: bool = False) -> StudyResult:
    """Run (or resume) a study into `out_dir` and return its results.

    `spec`: a `StudySpec`, a preset name or a TOML path. `executor`: default `LocalExecutor()`.
    `log`: experiment-tracking sinks, e.g. ``"tensorboard,mlflow"`` (default: the spec's `log`; see
    `reglab.study.tracking`). `rebuild`: first rebuild a damaged or lost study.db from the run
    directories (`rebuild_index`); a sound one is kept.

        >>> import tempfile
        >>> spec = load_spec("quickstart", seeds=2, epochs=1).override(
        ...     {"data.train_subset": 400, "data.test_subset": 200, "train.device": "cpu"})
        >>> out = tempfile.mkdtemp()
        >>> result = run_study(spec, out, progress=False)
        >>> len(result.executed), sorted(set(result.runs["status"]))
        (10, ['done'])
        >>> again = run_study(spec, out, progress=False)   # resumes: finished runs are kept
        >>> len(again.executed), len(again.skipped)
        (0, 10)
    """
    start = time.perf_counter()
    spec, out_dir = load_spec(spec), Path(out_dir)
    if not isinstance(log, Tracker):
        check_sinks(log)  # before anything is written
    tasks = plan(spec, out_dir)
    notes = []
    with study_lock(out_dir):
        if rebuild and not index_readable(out_dir):  # a sound index is kept, and the spec check below holds
            notes.append(rebuild_index(out_dir, spec, tasks))
        check_index_present(out_dir, f"index them again with `reglab compare SPEC --out {out_dir} --rebuild-index` "
                                     "(SPEC: the study's preset or TOML file), or use another --out")
        with StudyStore(out_dir) as store:
            todo, analyse_only = reconcile(store, spec, tasks, force=force)
            store.add_invocation(record())
            tracker = open_tracker(spec.log if log is None else log, spec.to_dict(), out_dir)
            tracker.catch_up(finished_runs(store))
            try:
                events = _execute(store, spec, tasks, todo, executor, tracker, progress=progress,
                                  analyse_only=len(analyse_only), notes=notes)
            finally:
                tracker.close()
    spec, runs, epochs = read_study(out_dir)
    todo_ids = {t.run_id for t in todo}
    skipped = [t.run_id for t in tasks if t.run_id not in todo_ids]
    return StudyResult(out_dir, spec, runs, epochs, executed=events.executed, skipped=skipped,
                       analysed=[r for r in events.executed if r in analyse_only],
                       seconds=time.perf_counter() - start, tracker=tracker)


def _execute(store: StudyStore, spec: StudySpec, tasks: list[RunTask], todo: list[RunTask],
             executor: Executor | None, tracker: Tracker, *, progress: bool, analyse_only: int = 0,
             notes: Sequence[str] = ()) -> StoreEvents:
    """Execute `todo` (the rest of `tasks` is already finished) with a progress display; returns the
    events that recorded it."""
    todo_ids = {t.run_id for t in todo}
    arms = {arm: [(t.run_id, t.config.train.epochs) for t in tasks if t.arm == arm] for arm in spec.arms}
    with StudyProgress(arms, enabled=progress) as display:
        for task in tasks:
            if task.run_id not in todo_ids:
                display.skipped(task.run_id)
        for note in notes:
            display.note(note)
        display.planned(len(todo), len(tasks) - len(todo), analyse_only)
        events = StoreEvents(store, display, tracker)
        before = set_aside_files(todo)
        (executor or LocalExecutor()).execute(todo, events)
        for note in newly_set_aside(todo, before):
            display.note(note)
    return events
