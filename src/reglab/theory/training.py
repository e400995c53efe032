"""Training a config with what it asks of the theory: the loss of ``train.objective`` and the condensation
tracker of ``train.track_condensation``, resolved here and handed to `Trainer`, which imports no theory.

Whatever trains a config goes through here: `reglab.train_run` (`train_run`), ``reglab train``, the study
executors and the reproductions (`build_trainer`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

from reglab.config import RunConfig
from reglab.data import TensorData
from reglab.theory.condensation import CondensationTracker
from reglab.theory.dropout import objective_loss
from reglab.train import loop
from reglab.train.loop import EpochCallback, ObjectiveLoss, RunResult, Trainer


def objective_for(cfg: RunConfig) -> ObjectiveLoss | None:
    """The loss of ``train.objective`` (`objective_loss` of that name); None for "drop", the loop's own."""
    name = cfg.train.objective
    return None if name == "drop" else functools.partial(objective_loss, name)


def config_callbacks_for(cfg: RunConfig) -> list[EpochCallback]:
    """The epoch callbacks `cfg` asks for: a fresh `CondensationTracker` with ``train.track_condensation``."""
    return [CondensationTracker()] if cfg.train.track_condensation else []


def build_trainer(cfg: RunConfig, *, data: TensorData | None = None) -> Trainer:
    """`Trainer` of `cfg`, handed the objective and the epoch callbacks the config asks for."""
    return Trainer(cfg, data=data, objective=objective_for(cfg), config_callbacks=config_callbacks_for(cfg))


def train_run(cfg: RunConfig, *, run_dir: str | Path | None = None, callbacks: Iterable[EpochCallback] = (),
              resume: bool = True, extend: bool = False, data: TensorData | None = None,
              pack_of_one: bool | None = None) -> RunResult:
    """Train one run described by `cfg` (the library's main entry point, ``reglab.train_run``): the loop's
    `reglab.train.train_run`, whose arguments these are, handed the objective and the epoch callbacks the
    config asks for (yours, `callbacks`, run after them each epoch)."""
    return loop.train_run(cfg, run_dir=run_dir, callbacks=callbacks, resume=resume, extend=extend, data=data,
                          pack_of_one=pack_of_one, objective=objective_for(cfg),
                          config_callbacks=config_callbacks_for(cfg))
