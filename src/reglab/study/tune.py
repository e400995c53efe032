"""Hyper-parameter search with seeds as replicates, on Optuna (Akiba et al., KDD 2019).

A trial is one configuration trained over the study's S seeds; its objective is the mean (or the
IQM) over seeds of each run's final value of an epoch metric (e.g. ``val_acc``), so the sampler
compares configurations, not lucky seeds. Samplers: grid (`reglab sweep` is this case), random, TPE.
Pruners: median or ASHA (successive halving) on intermediate values; the seeds of a trial run in
waves of `wave` runs, and after each wave the per-epoch curve of each of its seeds is reported at
step ``seed_index · epochs + epoch`` (so trials are compared seed against seed); a pruned trial
skips its remaining seeds.

Everything lives in the study directory: Optuna's trials in the study's own ``study.db`` (its RDB
tables beside reglab's), every (configuration, seed) cell as a run of the study store under
``runs/<arm>__s<seed>``. A killed search resumes: the trial that was running is marked failed and
asked again with the same parameters, and cells that finished are kept, never trained twice.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reglab import provenance
from reglab.config import ConfigError, apply_overrides, deep_merge, identity_changes, run_identity
from reglab.study.executors import Executor, LocalExecutor, RunTask, held
from reglab.study.progress import StudyProgress
from reglab.study.results import Study, load_study
from reglab.study.robust import iqm, iqm_interval
from reglab.study.runner import StoreEvents, check_index_present, finished_runs, study_lock
from reglab.study.spec import EPOCH_METRICS, StudySpec, check_logged, content_hash, run_id, same_run
from reglab.study.stats import describe
from reglab.study.store import DB_NAME, FINISHED, SEARCH_MARKER, StudyStore
from reglab.study.sweep import SweepParam
from reglab.study.target import lower_is_better
from reglab.study.tracking import Tracker, check_sinks, open_tracker
from reglab.train.rundir import config_changes, read_metrics

SAMPLERS = ("grid", "random", "tpe")
MAX_GRID = 10_000
"""Trials of one search at most (a grid's points, or --trials): each trains every seed."""
PRUNERS = ("none", "median", "asha")
OBJECTIVES = ("mean", "iqm")
OPTUNA_STUDY = "reglab-tune"


@dataclass(frozen=True)
class TuneSettings:
    """What a search is: its parameters, sampler, budget, objective and pruner."""

    params: list[SweepParam]
    sampler: str = "tpe"
    trials: int | None = None  # default: the grid's size for grid, else 20
    metric: str = "test_acc"  # an epoch metric; a run's value is its final one
    objective: str = "mean"  # over the seeds of a trial
    pruner: str = "none"
    seed: int = 0  # the sampler's seed
    name: str | None = None  # the study's name [default: "<spec name> tune"]

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.sampler, SAMPLERS, "sampler"), (self.pruner, PRUNERS, "pruner"),
                                     (self.objective, OBJECTIVES, "objective"),
                                     (self.metric, EPOCH_METRICS, "metric")):
            if value not in allowed:
                raise ConfigError(f"--{what}: unknown {value!r} (choose from {', '.join(allowed)})")
        if not self.params:
            raise ConfigError("--param: a search needs at least one parameter")
        for i, param in enumerate(self.params):
            if param.path in (p.path for p in self.params[:i]):
                raise ConfigError(f"--param {param.name}: {param.path} is searched twice")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials: needs at least 1 (got {self.trials})")
        if self.sampler == "grid" and (size := math.prod(len(p.values) for p in self.params)) > MAX_GRID:
            raise ConfigError(f"--param: a grid of {size} points (at most {MAX_GRID}); list fewer values, or "
                              "draw points with --sampler random or tpe")
        if self.trials is not None and self.trials > MAX_GRID:
            raise ConfigError(f"--trials: at most {MAX_GRID} (got {self.trials})")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--sampler-seed: must lie in [0, 2**32) (got {self.seed})")

    @property
    def direction(self) -> str:
        return "minimize" if lower_is_better(self.metric) else "maximize"

    @property
    def n_trials(self) -> int:
        if self.trials is not None:
            return self.trials
        return math.prod(len(p.values) for p in self.params) if self.sampler == "grid" else 20

    def to_dict(self) -> dict:
        return {**asdict(self), "params": [asdict(p) for p in self.params]}


@dataclass
class TuneResult:
    study: Study
    trials: pd.DataFrame  # one row per trial: number, state, arm, params, value, n, interval
    best: dict | None  # the best complete trial's row
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tracker: Tracker = field(default_factory=Tracker, repr=False)


def storage_url(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / DB_NAME).resolve()}"


def _sampler(settings: TuneSettings, trials_so_far: int = 0):
    """Random or TPE; the grid is enqueued point by point (`grid_points`), so its sampler never draws.
    Seeded with ``settings.seed + trials_so_far``: a resumed search draws on from a new stream instead of
    repeating the points its first trials drew (a sampler's state is not stored)."""
    import optuna

    seed = (settings.seed + trials_so_far) % 2**32
    if settings.sampler in ("grid", "random"):
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(name: str):
    """median: prune when the trial's best value so far is worse than the median of earlier trials at the
    same step, once 3 trials have finished; asha: Optuna's asynchronous successive halving defaults."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3)
    return optuna.pruners.SuccessiveHalvingPruner() if name == "asha" else optuna.pruners.NopPruner()


def _rounded(x: float, p: SweepParam) -> float:
    """A drawn float to 3 significant digits, for readable arm names and reusable runs — of the range's
    width as well for a linear range, so that a narrow range far from 0 (``ema=0.99:0.9999``) keeps
    a thousand steps — and kept inside the range (rounding can leave it: 0.99995 → 1.0)."""
    def decimals(v: float) -> int:
        return 2 - math.floor(math.log10(abs(v))) if v else 0

    places = decimals(x) if p.log else max(decimals(x), decimals(p.high - p.low))
    return min(max(round(x, places), p.low), p.high)


def suggest(trial: Any, settings: TuneSettings) -> dict[str, Any]:
    """One point of the search space: grid values or lists as categories, ranges as intervals."""
    point = {}
    for p in settings.params:
        if settings.sampler == "grid" or p.low is None:
            point[p.name] = trial.suggest_categorical(p.name, list(p.values))
        elif all(isinstance(v, int) for v in (p.low, p.high)):
            point[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            point[p.name] = _rounded(trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log), p)
    return point


def searched_values(p: SweepParam, settings: TuneSettings) -> tuple[Any, ...]:
    """The values of `p` a trial can take, to validate before anything runs: a range's ends for random and
    TPE (they draw from the interval), every listed or grid value otherwise."""
    return (p.low, p.high) if settings.sampler != "grid" and p.low is not None else p.values


def grid_points(params: list[SweepParam]) -> list[dict[str, Any]]:
    """Every point of the grid, the first parameter varying slowest."""
    import itertools

    names = [p.name for p in params]
    return [dict(zip(names, point, strict=True)) for point in itertools.product(*(p.values for p in params))]


def arm_name(point: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items())


def _overrides(point: dict[str, Any], params: list[SweepParam]) -> dict:
    return apply_overrides({}, {p.path: point[p.name] for p in params})


def tune_base(spec: StudySpec, name: str) -> dict:
    """The spec as data with its baseline arm's config as the base (what every trial overrides)."""
    data = spec.to_dict()
    return {**data, "name": name, "base": deep_merge(data["base"], data["arms"][spec.baseline]), "baseline": None}


def execute_cells(store: StudyStore, tasks: list[RunTask], executor: Executor, progress: bool,
                  tracker: Tracker | None = None) -> list[str]:
    """Run the cells of `tasks` that have not finished with the same config; returns the run ids run."""
    rows = {r.run_id: r for r in store.runs()}
    todo = []
    for task in tasks:
        config, row = task.config.to_dict(), rows.get(task.run_id)
        same = row is not None and same_run(row.config, config)
        if same and row.status in FINISHED and (task.run_dir / "summary.json").exists():
            continue
        if not same:
            shutil.rmtree(task.run_dir, ignore_errors=True)
            store.add_run(task.run_id, task.arm, task.seed, len(rows) + len(todo), config, content_hash(config))
        elif row.status in FINISHED:  # its files were lost: its stored summary goes with them, as in `reconcile`
            store.mark_pending(task.run_id)
        todo.append(task)
    if todo:
        arms = {t.arm: [(u.run_id, u.config.train.epochs) for u in todo if u.arm == t.arm] for t in todo}
        with StudyProgress(arms, enabled=progress) as display:
            executor.execute(todo, StoreEvents(store, display, tracker or Tracker()))
    return [t.run_id for t in todo]


def _run_value(store_rows: dict, run: str, metric: str) -> float:
    row = store_rows.get(run)
    if row is None or row.status != "done":
        return math.nan
    value = ((row.summary or {}).get("final") or {}).get(metric)
    return float(value) if isinstance(value, int | float) else math.nan


def aggregate(values: list[float], objective: str) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan
    return iqm(finite) if objective == "iqm" else float(np.mean(finite))


class _Search:
    """One invocation of `run_tune`: the Optuna study, the store and the growing set of arms."""

    def __init__(self, store: StudyStore, spec: StudySpec, settings: TuneSettings, executor: Executor,
                 wave: int, progress: bool, log: Callable[[str], None], tracker: Tracker):
        self.store, self.settings, self.executor, self.progress, self.log = store, settings, executor, progress, log
        self.tracker = tracker
        self.base = tune_base(spec, settings.name or f"{spec.name} tune")
        self.seeds, self.wave = spec.seed_list, max(1, wave)
        self.arms: dict[str, dict] = {}
        self.executed: list[str] = []

    def spec(self) -> StudySpec:
        return StudySpec.from_dict({**self.base, "arms": self.arms})

    def trial(self, trial: Any) -> tuple[Any, float | None, str | None]:
        """Run one trial's seeds; returns (state, objective value, error)."""
        from optuna.trial import TrialState

        point = suggest(trial, self.settings)
        arm = arm_name(point)
        self.arms[arm] = _overrides(point, self.settings.params)
        trial.set_user_attr("arm", arm)
        trial.set_user_attr("point", point)  # the values used (floats rounded to 3 significant digits)
        trial.set_user_attr("overrides", self.arms[arm])
        spec = self.spec()
        self.store.set_spec(spec.to_dict(), spec.spec_hash)
        out = self.store.out_dir
        tasks = [RunTask(run_id(arm, s), arm, s, spec.arm_config(arm, s), out / "runs" / run_id(arm, s))
                 for s in self.seeds]
        epochs = tasks[0].config.train.epochs
        for start in range(0, len(tasks), self.wave):
            wave = tasks[start:start + self.wave]
            self.executed += execute_cells(self.store, wave, self.executor, self.progress, self.tracker)
            for index, task in enumerate(wave, start):
                for record in read_metrics(task.run_dir / "metrics.jsonl"):
                    value = record.get(self.settings.metric)
                    if isinstance(value, int | float) and math.isfinite(value):
                        trial.report(float(value), index * epochs + record["epoch"])
            if start + self.wave < len(tasks) and trial.should_prune():
                self.log(f"trial {trial.number} ({arm}): pruned after {start + len(wave)} of {len(tasks)} seeds")
                return TrialState.PRUNED, None, None
        rows = {r.run_id: r for r in self.store.runs()}
        values = [_run_value(rows, t.run_id, self.settings.metric) for t in tasks]
        value = aggregate(values, self.settings.objective)
        if not math.isfinite(value):
            return TrialState.FAIL, None, (f"no run of {arm} finished with a finite {self.settings.metric} "
                                           "(diverged or failed runs; for regression use --metric test_loss)")
        finite = [v for v in values if math.isfinite(v)]
        self.log(f"trial {trial.number} ({arm}): {self.settings.objective} {self.settings.metric} "
                 f"{value:.4g} over {len(finite)}/{len(values)} seeds")
        return TrialState.COMPLETE, value, None


SETTING_OPTIONS = {"params": "--param", "sampler": "--sampler", "trials": "--trials", "metric": "--metric",
                   "objective": "--objective", "pruner": "--pruner", "seed": "--sampler-seed", "name": "the name"}
"""`TuneSettings` fields → the options that set them."""


def changed_fields(old: str, new: str) -> str:
    """What differs between two stored search descriptions, as the options that set it ("" if nothing).
    The base config is compared as runs are (`identity_changes`: a field reglab added since counts as its
    default); a search stored before the base config was kept whole compares its hash."""
    old_d, new_d = json.loads(old), json.loads(new)
    settings = [name for name in new_d["settings"] if old_d.get("settings", {}).get(name) != new_d["settings"][name]]
    names = [SETTING_OPTIONS.get(name, name) for name in settings]
    old_base = old_d.get("base")
    if isinstance(old_base, dict):
        base_changed = bool(identity_changes(old_base, new_d["base"]))
    else:
        base_changed = old_base != content_hash(new_d["base"])
    names += [what for changed, what in ((base_changed, "the base config"),
                                         (old_d.get("seeds") != new_d["seeds"], "the seeds")) if changed]
    return ", ".join(names)


def counted_trials(study: Any) -> list:
    """The trials that count towards the budget: complete, pruned, or failed for a reason of their own
    — not a trial left running by a killed driver, nor a failed trial retried since (`retry_failed`)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    ended = (TrialState.COMPLETE, TrialState.PRUNED)
    return [t for t in trials if t.number not in retried and (
        t.state in ended or (t.state == TrialState.FAIL and "error" in t.user_attrs))]


def retry_failed(study: Any, store: StudyStore) -> None:
    """Enqueue again each counted failed trial one of whose runs failed (an error, not a divergence), as
    a resumed study runs its failed runs again: its finished runs are kept, its failed ones rerun."""
    from optuna.trial import TrialState

    failed_arms = {row.arm for row in store.runs() if row.status == "failed"}
    for t in counted_trials(study):
        if t.state == TrialState.FAIL and t.user_attrs.get("arm") in failed_arms:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("reglab tune and reglab sweep need Optuna: pip install 'reglab[tune]'") from None
    return optuna


def open_study(out_dir: Path, settings: TuneSettings | None = None):
    """The Optuna study of a tune directory (created when `settings` are given)."""
    optuna = _optuna()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if settings is None:
        if not (out_dir / DB_NAME).exists():
            raise FileNotFoundError(f"{out_dir}: not a `reglab tune` directory (no {DB_NAME})")
        StudyStore(out_dir, create=False).close()  # a damaged index is named, with what to do, not Optuna's error
        try:
            return optuna.load_study(study_name=OPTUNA_STUDY, storage=storage_url(out_dir))
        except KeyError:
            raise FileNotFoundError(f"{out_dir}: not a `reglab tune` directory (no search in {DB_NAME})") from None
    study = optuna.create_study(study_name=OPTUNA_STUDY, storage=storage_url(out_dir), sampler=_sampler(settings),
                                pruner=_pruner(settings.pruner), direction=settings.direction, load_if_exists=True)
    if drawn := len(study.get_trials(deepcopy=False)):
        study.sampler = _sampler(settings, drawn)
    return study


def run_tune(spec: StudySpec, settings: TuneSettings, out_dir: str | Path, *, executor: Executor | None = None,
             wave: int | None = None, force: bool = False, progress: bool = True,
             log: Callable[[str], None] = lambda _: None, sinks: str | list[str] | None = None) -> TuneResult:
    """Search (or resume searching) `settings.params` over `spec`'s seeds into `out_dir`.

    `spec`: its baseline arm's config is the base every trial overrides; its seeds are each trial's
    replicates. `wave`: seeds run together between pruning checks [default: all seeds of a trial,
    or 2 with a pruner]. `force`: start a changed search over (finished cells with unchanged configs
    are still reused). `sinks`: experiment-tracking sinks (`reglab.study.tracking`; default: the
    spec's `log`).
    """
    optuna = _optuna()
    out_dir = Path(out_dir)
    check_sinks(sinks)
    base = tune_base(spec, "")
    ends = StudySpec.from_dict({**base, "name": spec.name, "arms": {  # every value (a range: its ends) is valid
        arm_name({p.name: v}): _overrides({p.name: v}, [p])
        for p in settings.params for v in searched_values(p, settings)}})
    check_logged(settings.metric, {a: ends.arm_config(a, 0) for a in ends.arms}, "--metric")
    wave = wave or (len(spec.seed_list) if settings.pruner == "none" else 2)
    baseline = spec.arm_config(spec.baseline, 0).to_dict()
    del baseline["seed"]
    described = json.dumps({"settings": settings.to_dict(), "base": run_identity(baseline),
                            "seeds": spec.seed_list}, sort_keys=True, default=str)
    check_index_present(out_dir, "restore it, or search into another --out")
    with study_lock(out_dir), StudyStore(out_dir) as store, held(executor):  # one Ray for every trial
        _claim_directory(store, out_dir, settings, described, force=force)
        store.add_invocation(provenance.record())
        study = open_study(out_dir, settings)
        for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # its driver was killed
            study.enqueue_trial(stale.params, user_attrs={"retry_of": stale.number}, skip_if_exists=False)
        tracker = open_tracker(spec.log if sinks is None else sinks, {**base, "name": spec.name}, out_dir)
        tracker.catch_up(finished_runs(store))
        search = _Search(store, spec, settings, executor or LocalExecutor(), wave, progress, log, tracker)
        retry_failed(study, store)
        for t in counted_trials(study):
            if "arm" in t.user_attrs:
                search.arms[t.user_attrs["arm"]] = t.user_attrs["overrides"]
        if settings.sampler == "grid":
            _queue_grid(study, settings)
        try:
            while len(counted_trials(study)) < settings.n_trials:
                trial = study.ask()
                state, value, error = search.trial(trial)
                if error is not None:
                    trial.set_user_attr("error", error)
                    log(f"trial {trial.number}: failed: {error}")
                study.tell(trial, value, state=state)
        finally:
            tracker.close()
        arms = _store_final_spec(store, search, settings, spec.seed_list)
        all_ids = [run_id(a, s) for a in arms for s in spec.seed_list]
    study_table = trials_table(out_dir, settings.metric, settings.objective)
    result = load_study(out_dir)
    skipped = [r for r in all_ids if r not in search.executed and r in set(result.runs["run_id"])]
    return TuneResult(result, study_table, best_trial(study_table, settings.direction), search.executed, skipped,
                      tracker)


def _claim_directory(store: StudyStore, out_dir: Path, settings: TuneSettings, described: str, *,
                     force: bool) -> None:
    """Make `out_dir` this search's: refuse a `reglab compare` study and, without `force`, a changed
    search (with it, the old Optuna study is deleted); then record the search and write its marker."""
    old = store.meta("tune")
    if old is None and store.spec() is not None:  # a study without a search record: never adopt its runs
        raise ConfigError(f"{out_dir}: holds a `reglab compare` study, not a search; use another --out")
    changes = changed_fields(old, described) if old is not None else ""
    if changes:
        if not force:
            raise ConfigError(f"{out_dir}: the search changed since it was started "
                              f"({changes}); use --force to start it over (finished "
                              "cells are reused), or another --out")
        _optuna().delete_study(study_name=OPTUNA_STUDY, storage=storage_url(out_dir))
    store.set_meta("tune", described)  # after the checks: a refused directory gets no search marker
    (out_dir / SEARCH_MARKER).write_text(json.dumps({"search": "reglab tune", "settings": settings.to_dict()},
                                                    default=str) + "\n")


def _queue_grid(study, settings: TuneSettings) -> None:
    """Enqueue every grid point that no trial has taken or is waiting for."""
    waiting = _optuna().trial.TrialState.WAITING
    queued = {arm_name(t.params) for t in counted_trials(study)} | {
        arm_name(t.system_attrs.get("fixed_params", {})) for t in study.get_trials(deepcopy=False, states=(waiting,))}
    for point in grid_points(settings.params):
        if arm_name(point) not in queued:
            study.enqueue_trial(point, skip_if_exists=False)


def _store_final_spec(store: StudyStore, search: _Search, settings: TuneSettings, seeds: list[int]) -> dict:
    """Store the searched arms as the study's spec (a grid in its own order, whatever order the trials
    ran in) and delete the cells of a search started over; returns the arms."""
    arms = search.arms
    if settings.sampler == "grid":
        order = [arm_name(point) for point in grid_points(settings.params)]
        arms = {a: arms[a] for a in order if a in arms} | arms
    final = StudySpec.from_dict({**search.base, "arms": arms})
    store.set_spec(final.to_dict(), final.spec_hash)
    for row in store.runs():
        if row.arm not in arms or row.seed not in seeds:
            store.delete_run(row.run_id)
            shutil.rmtree(store.run_dir(row.run_id), ignore_errors=True)
    return arms


def trials_table(out_dir: Path, metric: str | None = None, objective: str | None = None) -> pd.DataFrame:
    """One row per trial: number, state, arm, parameters, objective, and over its seeds n, mean, the
    Student-t 95% interval, IQM and its bootstrap interval of the final metric."""
    out_dir = Path(out_dir)
    study = open_study(out_dir)
    with StudyStore(out_dir, create=False) as store:
        described = json.loads(store.meta("tune") or "{}").get("settings", {})
        rows = {r.run_id: r for r in store.runs()}
    metric, objective = metric or described.get("metric", "test_acc"), objective or described.get("objective", "mean")
    records = []
    for t in study.get_trials(deepcopy=False):
        arm = t.user_attrs.get("arm")
        if arm is None:
            continue
        values = [_run_value(rows, r, metric) for r in rows if rows[r].arm == arm]
        s = describe(values)
        low, high = iqm_interval(values, resamples=2000)
        point = t.user_attrs.get("point", t.params)
        complete = t.state.name == "COMPLETE" and t.value is not None  # a pruned trial's value: an epoch's
        records.append({"trial": t.number, "state": t.state.name.lower(), "arm": arm, **{
            f"param:{k}": v for k, v in point.items()}, "objective": objective, "metric": metric,
            "value": t.value if complete else math.nan, "n": s.n, "mean": s.mean, "std": s.std,
            "ci_low": s.ci_low, "ci_high": s.ci_high, "iqm": iqm(values), "iqm_low": low, "iqm_high": high,
            "error": t.user_attrs.get("error") or ("interrupted; asked again" if t.state.name == "FAIL" else "")})
    return pd.DataFrame(records)


def best_trial(trials: pd.DataFrame, direction: str) -> dict | None:
    complete = trials[(trials["state"] == "complete") & trials["value"].notna()] if len(trials) else trials
    if not len(complete):
        return None
    index = complete["value"].idxmax() if direction == "maximize" else complete["value"].idxmin()
    return complete.loc[index].to_dict()


def best_trial_of(out_dir: str | Path) -> tuple[str, StudySpec]:
    """(arm name of the best complete trial, the search as a spec: its base, each trial's overrides as an arm,
    its seeds) of a tune directory."""
    out_dir = Path(out_dir)
    study = open_study(out_dir)
    complete = [t for t in study.trials if t.state.name == "COMPLETE" and t.value is not None]
    if not complete:
        raise ConfigError(f"--best-of {out_dir}: the search has no complete trial yet")
    with StudyStore(out_dir, create=False) as store:
        return study.best_trial.user_attrs["arm"], StudySpec.from_dict(store.spec())


def add_best_arm(spec: StudySpec, tune_dir: str | Path) -> tuple[StudySpec, list[str]]:
    """`spec` with one more arm, ``tuned: <params>``: its baseline arm with the best complete trial's
    parameters (nothing else of the search's base: the budget, data and model are `spec`'s), and the
    lines that say what the hand-over changed.

    Where `spec`'s seeds include seeds the search trained, every arm runs on as many seeds after the
    search's last instead: on those the winner's runs are the very runs that made it win, partly by
    their seeds' luck (the winner's curse), and its comparison would inherit that luck."""
    arm, search = best_trial_of(tune_dir)
    data = spec.to_dict()
    tuned = deep_merge(data["arms"][spec.baseline], search.to_dict()["arms"][arm])
    out = StudySpec.from_dict({**data, "arms": {**data["arms"], f"tuned: {arm}": tuned}})
    notes = []
    if used := sorted(set(out.seed_list) & set(search.seed_list)):
        first = max(search.seed_list) + 1
        out = out.with_seeds(list(range(first, first + len(out.seed_list))))
        notes.append(f"--best-of: seeds {first}–{first + len(out.seed_list) - 1}: the search trained seeds "
                     f"{', '.join(map(str, used))}, so its winner is judged on fresh ones")
    changes = list(config_changes(run_identity(search.arm_config(arm, 0).to_dict()),  # the searched values agree
                                  run_identity(out.arm_config(f"tuned: {arm}", 0).to_dict())))
    if changes:
        notes.append(f"--best-of: the search's base differs from this study's baseline arm in {', '.join(changes)}; "
                     "the tuned arm takes this study's")
    return out, notes
