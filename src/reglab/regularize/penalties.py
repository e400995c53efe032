"""Loss penalties: L1, L2 and elastic net over a parameter mask.

``l2 = λ`` adds ``(λ/2)·Σw²`` (gradient ``λ·w``), so plain SGD with ``l2 = λ`` takes the steps of
SGD with ``weight_decay = λ`` (Krogh & Hertz 1992; bit-identical when λ·w is exact, e.g. λ a power
of two — otherwise they can differ in the last bit, because torch fuses ``g + λ·w`` into one
multiply-add). Tutorials that write ``λ'·Σw²`` mean ``λ = 2λ'``. ``l1 = μ`` adds ``μ·Σ|w|``
(Tibshirani 1996, the lasso); both together are the elastic net (Zou & Hastie 2005).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

_WEIGHT_MODULES = (nn.Linear, _ConvNd, nn.Bilinear)
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def penalized_parameters(model: nn.Module, which: str = "weights") -> list[nn.Parameter]:
    """Parameters that penalties and weight decay act on, in `model.parameters()` order.

    ``weights``: the weight tensors of Linear/Conv(Transpose)/Bilinear layers and of attention
    projections; biases, normalisation parameters and embeddings are left alone. ``all``: every
    trainable parameter.
    """
    if which == "all":
        return [p for p in model.parameters() if p.requires_grad]
    if which != "weights":
        raise ValueError(f"regularize.penalize: expected 'weights' or 'all' (got {which!r})")
    chosen: set[int] = set()
    for module in model.modules():
        if isinstance(module, _WEIGHT_MODULES):
            chosen.add(id(module.weight))
        elif isinstance(module, nn.MultiheadAttention):
            chosen.update(id(w) for n in _ATTENTION_WEIGHTS if (w := getattr(module, n)) is not None)
    return [p for p in model.parameters() if id(p) in chosen and p.requires_grad]


class Penalty:
    """``l1·Σ|w| + (l2/2)·Σw²`` over `params`; call it to get the scalar to add to the loss."""

    def __init__(self, params: list[nn.Parameter], *, l1: float = 0.0, l2: float = 0.0):
        if l1 < 0 or l2 < 0:
            raise ValueError(f"regularize.l1/l2: penalties must be ≥ 0 (got l1={l1}, l2={l2})")
        self.params, self.l1, self.l2 = list(params), l1, l2

    @property
    def active(self) -> bool:
        return bool(self.params) and (self.l1 > 0 or self.l2 > 0)

    def __call__(self) -> torch.Tensor:
        if not self.params:
            return torch.zeros(())
        total = self.params[0].new_zeros(())
        if self.l1 > 0:
            total = total + self.l1 * torch.stack([p.abs().sum() for p in self.params]).sum()
        if self.l2 > 0:
            total = total + 0.5 * self.l2 * torch.stack([p.pow(2).sum() for p in self.params]).sum()
        return total
