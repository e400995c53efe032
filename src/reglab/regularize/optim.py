"""Optimizer and learning-rate schedule factory (all from `torch.optim`).

Weight decay is applied to the same parameter mask as the loss penalties (Linear/Conv weights by
default). It is *coupled* (added to the gradient, like an L2 penalty) for SGD, RMSProp and Adam
and *decoupled* for AdamW (Loshchilov & Hutter 2019): under Adam the coupled form is rescaled by
the adaptive denominator, so Adam + L2 and AdamW are different optimizers.

Schedules (factor of the base lr after `step` optimizer steps, W = warm-up steps, T = total):
  warm-up (Goyal et al. 2017)      min(1, (step + 1) / W) for step < W
  step                             gamma ** (step // (step_size · steps_per_epoch)), counted from 0
  cosine (Loshchilov & Hutter 2017) f + (1 − f)·½(1 + cos(π·min(1, (step − W)/(T − W)))), f = min_lr/lr
  linear (Devlin et al. 2019)      f + (1 − f)·(1 − min(1, (step − W)/(T − W))): warm-up, then a straight
                                   line to min_lr at the last step
  plateau                          `ReduceLROnPlateau` once per epoch: × gamma after more than
                                   `patience` epochs without improvement (torch's convention)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reglab.config import ConfigError, OptimConfig, RegularizeConfig, SWAConfig
from reglab.regularize.penalties import penalized_parameters
from reglab.regularize.swa import swa_lr_factor


def parameter_groups(model: nn.Module, optim: OptimConfig, reg: RegularizeConfig) -> list[dict]:
    decayed = {id(p) for p in penalized_parameters(model, reg.penalize)}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": optim.weight_decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, optim: OptimConfig, reg: RegularizeConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, optim, reg)
    fused = {"fused": True}  # one kernel per step on CUDA and CPU (torch.optim's own fused implementations)
    name = optim.name
    if name in ("sgd", "momentum", "nesterov"):
        momentum = 0.0 if name == "sgd" else optim.momentum
        if name == "nesterov" and momentum == 0:
            raise ConfigError("optim.momentum: Nesterov momentum needs optim.momentum > 0")
        return torch.optim.SGD(groups, lr=optim.lr, momentum=momentum, nesterov=name == "nesterov", **fused)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=optim.lr, alpha=optim.alpha, eps=optim.eps,  # no momentum
                                   foreach=True)  # torch has no fused RMSprop
    if name == "adam":
        return torch.optim.Adam(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps, **fused)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps, **fused)
    raise ConfigError(f"optim.name: unknown optimizer {name!r}")


def lr_factor(step: int, *, optim: OptimConfig, steps_per_epoch: int, total_steps: int) -> float:
    """Multiplier of the base learning rate after `step` optimizer steps (warm-up × schedule)."""
    sched = optim.schedule
    warmup = sched.warmup_epochs * steps_per_epoch
    if step < warmup:
        return min(1.0, (step + 1) / warmup)
    floor = sched.min_lr / optim.lr
    if sched.name == "step":
        return sched.gamma ** (step // (sched.step_size * steps_per_epoch))
    progress = min(1.0, (step - warmup) / max(1.0, total_steps - warmup))
    if sched.name == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if sched.name == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    return 1.0


class Schedule:
    """Per-step schedule (`LambdaLR`) plus, for ``plateau``, a per-epoch `ReduceLROnPlateau`; with `swa`,
    the averaged epochs' learning rate from step `swa_start` on (`reglab.regularize.swa.swa_lr_factor`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, optim: OptimConfig, *, steps_per_epoch: int,
                 total_steps: int, swa: SWAConfig | None = None, swa_start: int = 0):
        if optim.schedule.name == "plateau" and optim.schedule.warmup_epochs:
            raise ConfigError("optim.schedule.warmup_epochs: warm-up is not supported with the plateau "
                              "schedule")
        if optim.schedule.name == "plateau" and optim.schedule.gamma >= 1.0:
            raise ConfigError("optim.schedule.gamma: the plateau schedule needs gamma < 1")
        if optim.schedule.min_lr > optim.lr:
            raise ConfigError(f"optim.schedule.min_lr: must not exceed optim.lr={optim.lr} "
                              f"(got {optim.schedule.min_lr})")
        def scheduled(step: int) -> float:
            return lr_factor(step, optim=optim, steps_per_epoch=steps_per_epoch, total_steps=total_steps)

        def averaging(step: int) -> float:
            return swa_lr_factor(step, scheduled, swa=swa, start=swa_start, base_lr=optim.lr,
                                 steps_per_epoch=steps_per_epoch)

        swa_lr = swa is not None and swa.epochs > 0 and swa.lr is not None
        self.per_step = torch.optim.lr_scheduler.LambdaLR(optimizer, averaging if swa_lr else scheduled)
        self.plateau = None
        if optim.schedule.name == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=optim.schedule.gamma, patience=optim.schedule.patience,
                min_lr=optim.schedule.min_lr,
            )

    def step(self) -> None:
        if self.plateau is None:
            self.per_step.step()

    def epoch_end(self, monitored_loss: float) -> None:
        if self.plateau is not None:
            self.plateau.step(monitored_loss)

    def sync(self, step: int) -> None:
        """Put the per-step schedule and the optimizer's lr where `step` steps leave them under this
        schedule's horizon (a run resumed with a longer budget: its checkpoint holds the old one's lr)."""
        if self.plateau is not None:
            return
        per_step = self.per_step
        per_step.last_epoch = step
        lrs = [base * fn(step) for base, fn in zip(per_step.base_lrs, per_step.lr_lambdas, strict=True)]
        for group, lr in zip(per_step.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        per_step._last_lr = lrs

    def state_dict(self) -> dict:
        return {"per_step": self.per_step.state_dict(),
                "plateau": self.plateau.state_dict() if self.plateau else None}

    def load_state_dict(self, state: dict) -> None:
        self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])
