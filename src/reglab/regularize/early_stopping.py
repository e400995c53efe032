"""Early stopping on a monitored metric with restoration of the best epoch's weights
(Morgan & Bourlard 1990; Prechelt 1998, "Early stopping — but when?").

Training stops once `patience` epochs in a row did not improve `monitor` (strictly: lower loss,
higher accuracy); with `restore_best` the weights of the best epoch are kept and restored at the
end. The state (best value, epoch, weights, whether it stopped) travels in the checkpoint, so a
resumed run that had already stopped does not train on.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reglab.config import ConfigError, EarlyStoppingConfig


class EarlyStopping:
    """Stops after `patience` epochs without improvement of `monitor`; remembers the best weights."""

    def __init__(self, cfg: EarlyStoppingConfig):
        self.cfg = cfg
        self.maximize = cfg.monitor.endswith("acc")
        self.best = -math.inf if self.maximize else math.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None

    @property
    def enabled(self) -> bool:
        return self.cfg.patience > 0

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch is not None

    def update(self, epoch: int, metrics: dict, model: nn.Module) -> bool:
        """Record this epoch; return True when training should stop."""
        if self.cfg.monitor not in metrics:
            raise ConfigError(f"regularize.early_stopping.monitor: this run reports no {self.cfg.monitor!r} "
                              f"(available: {', '.join(k for k in metrics if k[:4] in ('val_', 'test'))})")
        value = metrics[self.cfg.monitor]
        improved = value > self.best if self.maximize else value < self.best
        if improved:
            self.best, self.best_epoch = value, epoch
            if self.cfg.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if epoch - self.best_epoch >= self.cfg.patience:
            self.stopped_epoch = epoch
        return self.stopped

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_state": self.best_state,
                "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.best_state = state["best"], state["best_epoch"], state["best_state"]
        self.stopped_epoch = state.get("stopped_epoch")
