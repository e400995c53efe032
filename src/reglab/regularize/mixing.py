"""Sample mixing: mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019).

The loss of a mixed batch is ``lam·ℓ(f(x̃), y) + (1 − lam)·ℓ(f(x̃), y_perm)``.

* mixup: ``x̃ = lam·x + (1 − lam)·x[perm]``, ``lam ~ Beta(α, α)``.
* CutMix: a box of ≈ (1 − lam) of the area, centred uniformly, is pasted from the partner (2-D
  for ``(N, C, H, W)`` images, a segment of the last axis for 1-D signals); ``lam`` is then the
  exact unpasted fraction, since clipping at the border shrinks the box.

A trainer draws an epoch's mixing at once (`draw_mixing`): ``lam`` for every step from torch's
global CPU generator (seeded and checkpointed by the trainer; `torch.distributions.Beta` takes no
generator), the partners and box centres from the run's data generator. A step then mixes its batch
with tensor operations only (`mix_batch`: no host synchronisation, so a packed step that mixes is
captured as a CUDA graph). `mixup` and `cutmix` mix one batch with a fresh draw.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class MixDraw(NamedTuple):
    """Mixing draws for `steps` batches of at most B samples (leading axes: a pack's runs, then steps).

    `blend`: mixup's lam (1 where CutMix or no mixing); `keys`: uniforms whose argsort is the partner
    permutation (the first b of them for a batch of b); `box`: CutMix's pasted positions over the
    last one or two sample axes (None: no CutMix)."""

    blend: Tensor
    keys: Tensor
    box: Tensor | None

    def step(self, i: int) -> MixDraw:
        """The draws of step `i` (the step axis is the one before a sample's own axes)."""
        box = None if self.box is None else self.box.select(self.blend.dim() - 1, i)
        return MixDraw(self.blend[..., i], self.keys[..., i, :], box)


def _beta(alpha: float, steps: int) -> Tensor:
    if alpha <= 0:
        raise ValueError(f"regularize.mixup/cutmix: Beta(α, α) needs α > 0 (got {alpha})")
    return torch.distributions.Beta(alpha, alpha).sample((steps,))


def _segment(size: int, fraction: Tensor, centre: Tensor) -> Tensor:
    """``(steps, size)``: True on [centre − cut//2, centre + cut//2) ∩ [0, size), cut = ⌊size·fraction⌋."""
    half = torch.floor(size * fraction).long() // 2
    lo, hi = (centre - half).clamp(min=0), (centre + half).clamp(max=size)
    at = torch.arange(size, device=centre.device)
    return (at >= lo[:, None]) & (at < hi[:, None])


def draw_mixing(steps: int, batch: int, sample_shape: tuple[int, ...], *, mixup: float = 0.0,
                cutmix: float = 0.0, generator: torch.Generator) -> MixDraw:
    """Mixing draws for an epoch of `steps` batches of at most `batch` samples of `sample_shape`, in
    this order: ``lam ~ Beta(α, α)`` per step (global CPU generator), then from `generator` the
    partner keys ``rand(steps, batch)`` and, for CutMix, box centres ``randint`` per axis and step."""
    device = generator.device
    lam = _beta(mixup or cutmix, steps).to(device)
    keys = torch.rand(steps, batch, generator=generator, device=device)
    if not cutmix:
        return MixDraw(lam, keys, None)
    if len(sample_shape) not in (1, 2, 3):
        raise ValueError(f"regularize.cutmix: needs batched inputs of ≥ 2 dims (got per-sample shape {sample_shape})")
    if len(sample_shape) == 3:  # (C, H, W): a box with side ratio √(1 − lam)
        (h, w), side = sample_shape[-2:], (1 - lam).sqrt()
        centre = [torch.randint(0, size, (steps,), generator=generator, device=device) for size in (h, w)]
        box = _segment(h, side, centre[0])[:, :, None] & _segment(w, side, centre[1])[:, None, :]
    else:  # (L,) or (C, L): a segment of the last axis
        length = sample_shape[-1]
        box = _segment(length, 1 - lam, torch.randint(0, length, (steps,), generator=generator, device=device))
    return MixDraw(torch.ones_like(lam), keys, box)


def mix_batch(x: Tensor, y: Tensor, draw: MixDraw) -> tuple[Tensor, Tensor, Tensor]:
    """``(x̃, y_perm, lam)`` of one batch of b ≤ B samples with one step's draws; lam a 0-dim tensor,
    blend × the unpasted fraction (in a pack a mixup run has an empty box, a CutMix run blend 1)."""
    perm = draw.keys[: x.shape[0]].argsort()
    partner = x[perm]
    blend = draw.blend.to(x.dtype)
    mixed = blend * x + (1 - blend) * partner
    if draw.box is None:
        return mixed, y[perm], blend
    return torch.where(draw.box, partner, mixed), y[perm], blend * (1 - draw.box.to(x.dtype).mean())


def _one_batch(x: Tensor, y: Tensor, generator: torch.Generator, **alpha: float):
    draw = draw_mixing(1, x.shape[0], tuple(x.shape[1:]), generator=generator, **alpha).step(0)
    mixed, partner, _ = mix_batch(x, y, draw)
    pasted = 0.0 if draw.box is None else draw.box.sum().item() / draw.box.numel()
    return mixed, partner, float(draw.blend) * (1.0 - pasted)


def mixup(x: Tensor, y: Tensor, alpha: float, generator: torch.Generator) -> tuple[Tensor, Tensor, float]:
    """mixup of one batch with a fresh draw: ``(x̃, y_perm, lam)``."""
    return _one_batch(x, y, generator, mixup=alpha)


def cutmix(x: Tensor, y: Tensor, alpha: float, generator: torch.Generator) -> tuple[Tensor, Tensor, float]:
    """CutMix of one batch with a fresh draw: ``(x̃, y_perm, lam)``, lam the exact unpasted fraction."""
    if x.dim() < 2:
        raise ValueError(f"regularize.cutmix: needs batched inputs of ≥ 2 dims (got shape {tuple(x.shape)})")
    return _one_batch(x, y, generator, cutmix=alpha)


__all__ = ["MixDraw", "cutmix", "draw_mixing", "mix_batch", "mixup"]
