"""Exponential moving average of the weights (Polyak & Juditsky 1992; as in timm's ModelEmaV2).

``θ̄_t = β·θ̄_{t−1} + (1 − β)·θ_t`` after every optimizer step, starting from ``θ̄_0 = θ_0``, i.e.
``θ̄_T = β^T·θ_0 + Σ_{k=1..T} (1 − β)·β^{T−k}·θ_k``. Built on `torch.optim.swa_utils.AveragedModel`
with ``use_buffers=True``, so BatchNorm running statistics are averaged alongside the weights and
the EMA model is evaluated as it stands (no BN re-estimation pass). Integer buffers
(``num_batches_tracked``) are copied, not averaged: torch's own EMA function would truncate the
float average back to the first value.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_multi_avg_fn(decay: float):
    """`AveragedModel` update for one same-dtype group: lerp floats towards the model, copy the rest."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"regularize.ema: decay must lie in (0, 1) (got {decay})")

    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], _n_averaged: torch.Tensor) -> None:
        if torch.is_floating_point(ema[0]) or torch.is_complex(ema[0]):
            torch._foreach_lerp_(ema, current, 1.0 - decay)  # θ̄ + (1 − β)(θ − θ̄)
        else:
            torch._foreach_copy_(ema, current)

    return update


def build_ema(model: nn.Module, decay: float) -> AveragedModel:
    """A deep copy of `model` whose parameters and buffers track the EMA; ``ema.module`` is the net."""
    ema = AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(decay), use_buffers=True)
    ema.update_parameters(model)  # θ̄_0 = θ_0
    return ema
