"""Exponential moving average of the weights (Polyak & Juditsky 1992; as in timm's ModelEmaV2).

``θ̄_t = β·θ̄_{t−1} + (1 − β)·θ_t`` after every optimizer step, starting from ``θ̄_0 = θ_0``.
Built on `torch.optim.swa_utils.AveragedModel` with ``use_buffers=True``, so BatchNorm running
statistics are averaged alongside the weights and the EMA model is evaluated as it stands.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def build_ema(model: nn.Module, decay: float) -> AveragedModel:
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.update_parameters(model)  # θ̄_0 = θ_0
    return ema
