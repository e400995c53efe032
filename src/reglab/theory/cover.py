"""The effective ratio with its method stated: exact minimum cover or greedy upper bound.

`effective_ratio_greedy` and `effective_ratio_exact` (MILP) return bare floats; `cover_ratio`
returns which one was computed beside the value, and takes the bias of a raw weight tensor the
way `neuron_weights` does (Zhang & Xu, arXiv:2207.05952; see `reglab.theory.condensation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reglab.theory.condensation import effective_ratio_exact, effective_ratio_greedy, neuron_weights


@dataclass(frozen=True)
class CoverRatio:
    """r/m of a layer's neurons; `method` "exact" (minimum cover) or "greedy" (upper bound ≤ (ln m + 1)·r/m)."""

    value: float
    method: str
    neurons: int


def cover_ratio(weights: nn.Module | torch.Tensor, threshold: float = 0.95, *, bias: torch.Tensor | None = None,
                exact: bool = False) -> CoverRatio:
    """Effective ratio of a Linear/Conv layer, or of a raw (m, ...) weight tensor with its optional `bias`."""
    rows = neuron_weights(weights, bias)
    value = (effective_ratio_exact if exact else effective_ratio_greedy)(rows, threshold)
    return CoverRatio(value, "exact" if exact else "greedy", rows.shape[0])
