"""Stochastic weight averaging: Izmailov, Podoprikhin, Garipov, Vetrov & Wilson (2018), *Averaging
weights leads to wider optima and better generalization*, UAI.

The weights at the end of each of the last E epochs (``regularize.swa.epochs``) are averaged with
equal weights, ``θ_SWA = (1/E)·Σ_e θ_e`` (`torch.optim.swa_utils.AveragedModel`), and the average is
what the run reports: its BatchNorm statistics are recomputed for the averaged weights by one pass
over the (un-augmented) training set in training mode (`torch.optim.swa_utils.update_bn`) before
each evaluation. With ``swa.lr`` the learning rate of those epochs moves from the schedule's value
to ``swa.lr`` over ``anneal_epochs`` epochs and stays there, as torch's `SWALR` anneals
(``lr = α·swa_lr + (1 − α)·lr_start``, α = t or (1 − cos πt)/2), here per step rather than per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from reglab.config import SWAConfig


def swa_start_step(swa: SWAConfig, epochs: int, steps_per_epoch: int) -> int:
    """The first optimizer step of the averaged epochs (the last ``swa.epochs`` of `epochs`)."""
    return (epochs - swa.epochs) * steps_per_epoch


def swa_lr_factor(step: int, factor: Callable[[int], float], *, swa: SWAConfig, start: int, base_lr: float,
                  steps_per_epoch: int) -> float:
    """The lr factor at `step` of a run whose schedule gives `factor(step)`: unchanged before `start`
    or without ``swa.lr``; from `start` on, annealed from ``factor(start)`` to ``swa.lr / base_lr``."""
    if swa.lr is None or step < start:
        return factor(step)
    anneal_steps = swa.anneal_epochs * steps_per_epoch
    t = 1.0 if anneal_steps == 0 else min(1.0, (step - start + 1) / anneal_steps)
    alpha = t if swa.anneal == "linear" else (1 - math.cos(math.pi * t)) / 2
    return alpha * swa.lr / base_lr + (1 - alpha) * factor(start)


def build_swa(model: nn.Module) -> AveragedModel:
    """A deep copy of `model` that averages its parameters with equal weights (``swa.module``); buffers
    are not averaged: BatchNorm's are recomputed for the average (`refresh_batch_norm`)."""
    return AveragedModel(model)


def refresh_batch_norm(swa: AveragedModel, batches: Iterator[torch.Tensor]) -> None:
    """Recompute the averaged network's BatchNorm statistics from `batches` (`update_bn`: a cumulative
    average over the batches, in training mode); no-op without BatchNorm."""
    update_bn(batches, swa.module)
