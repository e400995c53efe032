"""Max-norm constraint (Srebro & Shraibman 2005; Srivastava et al. 2014, JMLR, §5.1, used there with
dropout at c = 3–4): each unit's incoming weight vector w is kept in the ball ‖w‖₂ ≤ c — projected
once when the run is built and after every optimizer step,

    w ← w · c / (‖w‖₂ + 10⁻⁷)   where ‖w‖₂ > c,   unchanged otherwise   (`torch.renorm`'s rule).

A unit's incoming weights are a row of a Linear weight (out, in) or of an attention projection, an
output filter of a Conv weight (out, in, k…), a slice (out) of a Bilinear weight, and a column (dim 1)
of a ConvTranspose weight (in, out, k…). Every such layer is constrained, the output layer included;
biases and normalisation parameters never are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.conv import _ConvTransposeNd

from reglab.config import ConfigError
from reglab.regularize.penalties import penalized_parameters

EPS = 1e-7
"""`torch.renorm` divides by ‖w‖₂ + 1e-7."""

UnitWeights = list[tuple[nn.Parameter, int]]
"""Constrained weights, each with the axis of its units."""


def max_norm_weights(model: nn.Module) -> UnitWeights:
    """The weights the constraint acts on (`penalized_parameters(…, "weights")`) with their unit axes."""
    unit_axis: dict[int, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, _ConvTransposeNd):
            if module.groups > 1:
                raise ConfigError(f"regularize.max_norm: {name or 'the model'} is a grouped ConvTranspose, whose "
                                  "units' incoming weights are not slices of one axis; use it without max_norm")
            unit_axis[id(module.weight)] = 1
    return [(p, unit_axis.get(id(p), 0)) for p in penalized_parameters(model, "weights")]


@torch.no_grad()
def apply_max_norm(weights: UnitWeights, c: float) -> None:
    """Project every unit of `weights` onto ‖w‖₂ ≤ c, in place."""
    for w, axis in weights:
        w.copy_(torch.renorm(w, p=2, dim=axis, maxnorm=c))


@torch.no_grad()
def apply_max_norm_stacked(weights: Sequence[tuple[torch.Tensor, int]], c: torch.Tensor) -> None:
    """The same for K runs at once: weights ``(K, …)`` shaped as the network uses them, each with its
    unit axis in that shape (one more than the run's own), radii ``(K,)`` (∞ for a run without the
    constraint: its weights stay as they are)."""
    for w, axis in weights:
        norm = torch.linalg.vector_norm(w, dim=[d for d in range(1, w.dim()) if d != axis], keepdim=True)
        radius = c.view(-1, *[1] * (w.dim() - 1))
        w.mul_(torch.where(norm > radius, radius / (norm + EPS), 1.0))
