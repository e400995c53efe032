"""Early stopping on a monitored metric with restoration of the best epoch's weights."""

from __future__ import annotations

import math

import torch
from torch import nn

from reglab.config import EarlyStoppingConfig


class EarlyStopping:
    """Stops after `patience` epochs without improvement of `monitor`; remembers the best weights."""

    def __init__(self, cfg: EarlyStoppingConfig):
        self.cfg = cfg
        self.maximize = cfg.monitor.endswith("acc")
        self.best = -math.inf if self.maximize else math.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def enabled(self) -> bool:
        return self.cfg.patience > 0

    def update(self, epoch: int, metrics: dict, model: nn.Module) -> bool:
        """Record this epoch; return True when training should stop."""
        value = metrics[self.cfg.monitor]
        improved = value > self.best if self.maximize else value < self.best
        if improved:
            self.best, self.best_epoch = value, epoch
            if self.cfg.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return epoch - self.best_epoch >= self.cfg.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.best_state = state["best"], state["best_epoch"], state["best_state"]
