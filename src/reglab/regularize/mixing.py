"""Sample mixing: mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019).

Both return ``(x_mixed, y_perm, lam)``; the loss is ``lam·ℓ(f(x̃), y) + (1 − lam)·ℓ(f(x̃), y_perm)``.
``lam ~ Beta(α, α)`` is drawn from torch's global CPU generator (seeded and checkpointed by the
trainer); the partner permutation from the data generator.
"""

from __future__ import annotations

import math

import torch


def _beta(alpha: float) -> float:
    return float(torch.distributions.Beta(alpha, alpha).sample())


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator):
    lam = _beta(alpha)
    perm = torch.randperm(x.shape[0], generator=generator, device=generator.device)
    return lam * x + (1.0 - lam) * x[perm], y[perm], lam


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator):
    """Paste a box covering a (1 − lam) fraction of each image from a partner; lam is then exact."""
    lam = _beta(alpha)
    perm = torch.randperm(x.shape[0], generator=generator, device=generator.device)
    h, w = x.shape[-2:]
    cut_h, cut_w = int(h * math.sqrt(1.0 - lam)), int(w * math.sqrt(1.0 - lam))
    cy, cx = (int(v) for v in torch.randint(0, h, (1,)).tolist() + torch.randint(0, w, (1,)).tolist())
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    return mixed, y[perm], lam
