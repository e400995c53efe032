"""Condensation of hidden neurons: features, cosine similarity, effective ratio, an epoch tracker.

Zhang & Xu, *Implicit regularization of dropout* (arXiv:2207.05952): trained with dropout, the input
weights of hidden neurons condense on isolated orientations. The input weight of neuron k is
w_k = (its incoming weights, its bias) — the paper's wording, bias included; for a convolution each
output channel's flattened kernel (plus bias) is one neuron.

Effective ratio (the source's Definition 1): m_eff/m, where m_eff is the smallest size of a set U of
unit directions such that every neuron's unit input weight has cosine > threshold (0.95) with some
u ∈ U. reglab takes the candidate directions u among the neurons' own unit directions u_k = w_k/‖w_k‖,
which makes it minimum set cover. (With U free, the minimum lies between this cover at the doubled
angle, threshold cos(2·arccos t), and this cover at t.) Set cover is NP-hard:
`effective_ratio_exact` solves the 0/1 program with scipy's MILP (HiGHS), optionally under a time
limit; `effective_ratio_greedy` is the greedy cover, an upper bound with r_greedy ≤ H(s)·r ≤
(ln s + 1)·r, s the largest set (Johnson 1974 / Chvátal 1979).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def neuron_weights(layer: nn.Module | torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """(m, d) input weights, one row per neuron: a Linear row / a Conv output channel, bias appended last.

    With a raw weight tensor (m, ...) pass its `bias` (m,) separately, or None for no bias.
    """
    if isinstance(layer, nn.Module):
        weight, bias = layer.weight, layer.bias
    else:
        weight = layer
    w = weight.detach().flatten(1)
    return w if bias is None else torch.cat([w, bias.detach().reshape(-1, 1).to(w)], 1)


@dataclass
class NeuronFeatures:
    """Per hidden neuron k: amplitude A_k, unit direction u_k and, for 1-D input with bias, angle θ_k."""

    amplitude: torch.Tensor  # (m,)
    direction: torch.Tensor  # (m, d)
    angle: torch.Tensor | None  # (m,) in [−π, π), or None


def neuron_features(layer_or_weights: nn.Module | torch.Tensor,
                    output_weights: nn.Module | torch.Tensor | None = None, *,
                    bias: torch.Tensor | None = None) -> NeuronFeatures:
    """A_k = ‖a_k‖·‖w_k‖, u_k = w_k/‖w_k‖, θ_k = atan2(b_k, w_k) (1-D input with bias only).

    w_k: input weights incl. bias (`neuron_weights`); a_k: neuron k's outgoing weights, i.e. column k
    of the next layer's weight (out, m, ...) — |a_k| for one output. Without `output_weights`,
    A_k = ‖w_k‖. Zero neurons get direction 0.
    """
    w = neuron_weights(layer_or_weights, bias)
    is_layer = isinstance(layer_or_weights, nn.Module)
    has_bias = layer_or_weights.bias is not None if is_layer else bias is not None
    norms = w.norm(dim=1)
    amplitude = norms
    if output_weights is not None:
        a = output_weights.weight if isinstance(output_weights, nn.Module) else output_weights
        a = a.detach()
        a_norm = a.abs() if a.dim() == 1 else a.transpose(0, 1).flatten(1).norm(dim=1)
        if a_norm.shape != norms.shape:
            raise ValueError(f"output weights give {a_norm.numel()} neurons, input weights {norms.numel()}")
        amplitude = a_norm.to(norms) * norms
    angle = None
    if has_bias and w.shape[1] == 2:
        angle = torch.atan2(w[:, 1], w[:, 0])
        angle = torch.where(angle >= math.pi, angle - 2 * math.pi, angle)
    return NeuronFeatures(amplitude, F.normalize(w, dim=1), angle)


def cosine_similarity_matrix(weights: nn.Module | torch.Tensor) -> torch.Tensor:
    """(m, m) cos(w_k, w_l) = ⟨w_k, w_l⟩/(‖w_k‖‖w_l‖) of the neurons' input weights (0 for zero rows)."""
    u = F.normalize(neuron_weights(weights), dim=1)
    return (u @ u.T).clamp_(-1.0, 1.0)


def _coverage(weights: nn.Module | torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean (m, m): neuron i is covered by direction u_j when cos > threshold (always by itself)."""
    cover = cosine_similarity_matrix(weights) > threshold
    return cover.fill_diagonal_(True)


def effective_ratio_greedy(weights: nn.Module | torch.Tensor, threshold: float = 0.95) -> float:
    """Greedy upper bound r_greedy/m of the effective ratio (module docstring); r_greedy ≤ (ln m + 1)·r.

    Greedy: repeatedly take the direction covering the most still-uncovered neurons (lowest index on
    ties); once no direction covers two of them, each remaining neuron is its own direction.
    """
    cover = _coverage(weights, threshold).float()  # symmetric: column j = the neurons u_j covers
    m = cover.shape[0]
    uncovered = torch.ones(m, dtype=cover.dtype, device=cover.device)
    chosen = 0
    while True:
        gains = uncovered @ cover
        best = int(gains.argmax())
        if gains[best] <= 1:
            return (chosen + int(uncovered.sum())) / m
        chosen += 1
        uncovered = uncovered * (1 - cover[:, best])


class CoverNotSolved(RuntimeError):
    """The exact set cover was not proven optimal (time limit or solver failure)."""


def effective_ratio_exact(weights: nn.Module | torch.Tensor, threshold: float = 0.95, *,
                          time_limit: float | None = None) -> float:
    """Exact effective ratio r/m: min Σ_j x_j s.t. Σ_j cover_ij x_j ≥ 1 ∀i, x ∈ {0,1}^m (HiGHS MILP).

    Exponential in the worst case. With `time_limit` (seconds) a cover not proven optimal by then
    raises `CoverNotSolved` (callers fall back to `effective_ratio_greedy` and say so).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    cover = _coverage(weights, threshold).cpu().numpy().astype(np.float64)
    m = cover.shape[0]
    options = {} if time_limit is None else {"time_limit": float(time_limit)}
    result = milp(np.ones(m), constraints=LinearConstraint(cover, lb=1.0), integrality=np.ones(m),
                  bounds=Bounds(0.0, 1.0), options=options)
    if result.status != 0:
        raise CoverNotSolved(f"set-cover MILP not solved to optimality: {result.message}")
    return round(result.fun) / m


def _first_layer(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if isinstance(module, _LAYER_TYPES):
            return name
    raise ValueError("model has no nn.Linear / nn.Conv layer to track; name the layers explicitly")


class CondensationTracker:
    """Epoch callback ``(epoch, model, metrics) -> {"effective_ratio/<layer>": r}`` for the trainer
    (r: the greedy upper bound, `effective_ratio_greedy`, cheap enough for every epoch).

    `layers`: module names (``model.get_submodule``) of Linear/Conv layers; default the first one
    (the first hidden layer). `history` keeps one record per call, keyed like the metrics.
    """

    def __init__(self, layers: Sequence[str] | None = None, *, threshold: float = 0.95):
        self.layers = list(layers) if layers is not None else None
        self.threshold = threshold
        self.history: list[dict] = []

    def __call__(self, epoch: int, model: nn.Module, metrics: dict | None = None) -> dict[str, float]:
        names = self.layers if self.layers is not None else [_first_layer(model)]
        ratios = {f"effective_ratio/{name}": effective_ratio_greedy(model.get_submodule(name), self.threshold)
                  for name in names}
        self.history.append({"epoch": epoch, **ratios})
        return ratios
