"""Sample mixing: mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019).

Both return ``(x_mixed, y_perm, lam)``; the loss is ``lam·ℓ(f(x̃), y) + (1 − lam)·ℓ(f(x̃), y_perm)``.
``lam ~ Beta(α, α)`` is drawn from torch's global CPU generator (seeded and checkpointed by the
trainer); the partner permutation and the CutMix box position from the data generator.

mixup: ``x̃ = lam·x + (1 − lam)·x[perm]``. CutMix pastes a box of ≈ (1 − lam) of the area from
the partner (2-D for ``(N, C, H, W)`` images, a segment of the last axis for 1-D signals) and
then sets ``lam`` to the exact unpasted fraction, since clipping at the border shrinks the box.
"""

from __future__ import annotations

import math

import torch


def _beta(alpha: float) -> float:
    if alpha <= 0:
        raise ValueError(f"regularize.mixup/cutmix: Beta(α, α) needs α > 0 (got {alpha})")
    return float(torch.distributions.Beta(alpha, alpha).sample())


def _permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator, device=generator.device)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator):
    lam = _beta(alpha)
    perm = _permutation(x.shape[0], generator)
    return lam * x + (1.0 - lam) * x[perm], y[perm], lam


def _interval(size: int, fraction: float, generator: torch.Generator) -> tuple[int, int]:
    """[lo, hi) of length ≈ size·fraction centred at a uniform position, clipped to [0, size)."""
    cut = int(size * fraction)
    centre = int(torch.randint(0, size, (1,), generator=generator, device=generator.device))
    return max(centre - cut // 2, 0), min(centre + cut // 2, size)


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator):
    """Paste a box covering a (1 − lam) fraction of each sample from a partner; lam is then exact."""
    lam = _beta(alpha)
    perm = _permutation(x.shape[0], generator)
    mixed = x.clone()
    if x.dim() >= 4:  # (N, C, H, W): a box with side ratio √(1 − lam)
        (h, w), side = x.shape[-2:], math.sqrt(1.0 - lam)
        (top, bottom), (left, right) = _interval(h, side, generator), _interval(w, side, generator)
        mixed[..., top:bottom, left:right] = x[..., top:bottom, left:right][perm]
        pasted = (bottom - top) * (right - left) / (h * w)
    elif x.dim() >= 2:  # (N, L) or (N, C, L): a segment of the last axis
        length = x.shape[-1]
        lo, hi = _interval(length, 1.0 - lam, generator)
        mixed[..., lo:hi] = x[..., lo:hi][perm]
        pasted = (hi - lo) / length
    else:
        raise ValueError(f"regularize.cutmix: needs batched inputs of ≥ 2 dims (got shape {tuple(x.shape)})")
    return mixed, y[perm], 1.0 - pasted
