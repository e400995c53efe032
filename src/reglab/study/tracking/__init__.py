"""Experiment tracking: a study's runs mirrored into TensorBoard and / or MLflow (off by default).

    run_study(spec, out, log="tensorboard,mlflow")     # or `log = ["tensorboard"]` in the spec,
                                                       # or `reglab compare --log tensorboard,mlflow`

Only the study driver logs, from what the study store receives: when the store records a finished
run (done or diverged), the run's whole epoch history — the records of its ``metrics.jsonl`` — goes to
every sink at once, so every executor (local pool, packed, Ray) logs each run exactly once and no
progress message that arrives late or never can drop a point. When a study starts (or resumes), runs
the store holds as finished that a sink has not recorded yet (logging switched on later, a driver
that died) are logged first. Failed runs are not logged; when a resumed study re-runs them, they are.

A sink is a `Tracker`; the base class records nothing and is the "logging off" object, so the
runner calls it unconditionally. The libraries are imported only when their sink is chosen
(``pip install 'reglab[tracking]'``).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reglab.config import ConfigError, flatten

SINKS = {"tensorboard": "reglab.study.tracking.tensorboard_sink:TensorBoardTracker",
         "mlflow": "reglab.study.tracking.mlflow_sink:MLflowTracker"}
"""Sink name -> ``module:class``; the class takes ``(spec, out_dir, target)``."""


@dataclass(frozen=True)
class LoggedRun:
    """One finished run as the store holds it: identity, resolved config and per-epoch records."""

    run_id: str
    arm: str
    seed: int
    status: str
    config: dict
    epochs: list[dict]

    @property
    def final(self) -> dict:
        return self.epochs[-1] if self.epochs else {}


def scalars(record: dict) -> dict[str, float]:
    """The numeric metrics of an epoch record (``epoch`` and ``step`` are its position, not metrics)."""
    return {k: float(v) for k, v in record.items()
            if k not in ("epoch", "step") and isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(v)}


def varied_keys(spec: dict) -> list[str]:
    """The dotted run-config keys some arm overrides: the study's hyper-parameters."""
    return sorted({key for table in spec.get("arms", {}).values() for key in flatten(table)})


class Tracker:
    """The null sink: accepts everything, records nothing. Sinks override what they record."""

    def logged(self) -> set[str]:
        """Run ids this sink already holds for the study (so a resumed study does not log them twice)."""
        return set()

    def log_run(self, run: LoggedRun) -> None:
        """Record one finished run: per-epoch scalars, its parameters and identity."""

    def log_report(self, report_dir: Path) -> None:
        """Attach the study's written report."""

    def close(self) -> None:
        """Flush and end the study's records."""

    def catch_up(self, finished: Iterable[LoggedRun]) -> None:
        """Log the finished runs this sink does not hold yet."""
        held = self.logged()
        for run in finished:
            if run.run_id not in held:
                self.log_run(run)


class Trackers(Tracker):
    """Several sinks fed the same events."""

    def __init__(self, sinks: Sequence[Tracker]):
        self.sinks = list(sinks)

    def catch_up(self, finished: Iterable[LoggedRun]) -> None:
        runs = list(finished)
        for sink in self.sinks:
            sink.catch_up(runs)

    def log_run(self, run: LoggedRun) -> None:
        for sink in self.sinks:
            sink.log_run(run)

    def log_report(self, report_dir: Path) -> None:
        for sink in self.sinks:
            sink.log_report(report_dir)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def parse_sinks(value: str | Sequence[str] | None) -> dict[str, str | None]:
    """``"tensorboard,mlflow=URI"`` or a list of such items -> ``{name: target or None}``; ValueError
    for an unknown sink."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    sinks: dict[str, str | None] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, _, target = item.partition("=")
        if name not in SINKS:
            raise ValueError(f"unknown sink {name!r} (sinks: {', '.join(SINKS)}; "
                             "e.g. tensorboard,mlflow or mlflow=TRACKING_URI)")
        sinks[name] = target or None
    return sinks


def check_sinks(value: str | Sequence[str] | None) -> dict[str, str | None]:
    """`parse_sinks` with a one-line `ConfigError` naming the `log` option."""
    try:
        return parse_sinks(value)
    except ValueError as err:
        raise ConfigError(f"log: {err}") from None


def open_tracker(value: str | Sequence[str] | Tracker | None, spec: dict, out_dir: Path) -> Tracker:
    """The tracker for a study: a `Tracker` as given, else the sinks named in `value` (none: the null one).

    ``tensorboard[=DIR]`` writes under DIR (default ``<out_dir>/tensorboard``); ``mlflow[=URI]`` logs to
    the tracking URI (default ``$MLFLOW_TRACKING_URI``, else SQLite at ``<out_dir>/mlflow.db``).
    """
    if isinstance(value, Tracker):
        return value
    sinks = []
    for name, target in check_sinks(value).items():
        module, _, cls = SINKS[name].partition(":")
        try:
            factory = getattr(importlib.import_module(module), cls)
        except ImportError as err:
            raise ConfigError(f"log: the {name} sink needs {err.name or name}: "
                              "pip install 'reglab[tracking]'") from None
        if name == "mlflow":
            target = target or os.environ.get("MLFLOW_TRACKING_URI")
            logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating tables…"
        sinks.append(factory(spec, Path(out_dir), target))
    return sinks[0] if len(sinks) == 1 else Trackers(sinks) if sinks else Tracker()
