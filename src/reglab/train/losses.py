"""Training criteria and accuracy.

``mse`` is ½‖f(x) − y‖² summed over outputs and averaged over samples — the convention of the
dropout-theory results (so E_mask[L_drop] = L_eval + R1 holds exactly). Note that it differs from
`torch.nn.MSELoss`, which averages over outputs too. Classification targets are one-hot for it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from reglab.config import ConfigError

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def half_squared_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * (output - target).pow(2).flatten(1).sum(1).mean()


def make_criterion(loss: str, num_classes: int | None, *, label_smoothing: float = 0.0) -> Criterion:
    """Mean loss of a batch: ``criterion(output, y)``."""
    if num_classes is None and label_smoothing:
        raise ConfigError(f"regularize.label_smoothing: smooths class labels, and this data set is a regression "
                          f"one (got {label_smoothing}); use 0")
    if loss == "ce":
        if num_classes is None:
            raise ConfigError("train.loss: cross-entropy needs a classification data set; use 'mse'")
        return lambda out, y: F.cross_entropy(out, y, label_smoothing=label_smoothing)
    if num_classes is None:
        return half_squared_error

    def mse_onehot(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = F.one_hot(y, num_classes).to(out.dtype)
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / num_classes
        return half_squared_error(out, target)

    return mse_onehot


def correct(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of correct top-1 predictions (a tensor, so no host sync)."""
    return (output.argmax(dim=1) == y).sum()
