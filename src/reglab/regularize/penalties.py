"""Loss penalties: L1, L2 and elastic net over a parameter mask.

``l2 = λ`` adds ``(λ/2)·Σw²`` (gradient ``λ·w``), so plain SGD with ``l2 = λ`` takes exactly the
steps of SGD with ``weight_decay = λ``. ``l1 = μ`` adds ``μ·Σ|w|`` (Tibshirani 1996); both together
are the elastic net (Zou & Hastie 2005).
"""

from __future__ import annotations

import torch
from torch import nn

_WEIGHT_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Bilinear)


def penalized_parameters(model: nn.Module, which: str = "weights") -> list[nn.Parameter]:
    """Parameters that penalties and weight decay act on.

    ``weights``: the weight tensors of Linear/Conv layers and attention input projections; biases,
    normalisation parameters and embeddings are left alone. ``all``: every trainable parameter.
    """
    if which == "all":
        return [p for p in model.parameters() if p.requires_grad]
    chosen: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, _WEIGHT_MODULES):
            chosen[id(module.weight)] = module.weight
        elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
            chosen[id(module.in_proj_weight)] = module.in_proj_weight
    return [p for p in chosen.values() if p.requires_grad]


class Penalty:
    """``l1·Σ|w| + (l2/2)·Σw²`` over `params`; call it to get the scalar to add to the loss."""

    def __init__(self, params: list[nn.Parameter], *, l1: float = 0.0, l2: float = 0.0):
        self.params, self.l1, self.l2 = list(params), l1, l2

    @property
    def active(self) -> bool:
        return bool(self.params) and (self.l1 > 0 or self.l2 > 0)

    def __call__(self) -> torch.Tensor:
        total = self.params[0].new_zeros(())
        if self.l1 > 0:
            total = total + self.l1 * torch.stack([p.abs().sum() for p in self.params]).sum()
        if self.l2 > 0:
            total = total + 0.5 * self.l2 * torch.stack([p.pow(2).sum() for p in self.params]).sum()
        return total
