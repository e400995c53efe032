"""Mini-batches and image augmentation on the training device, driven by one `torch.Generator`.

Nothing here synchronises with the host: index permutations and random offsets are drawn on the
generator's device and used there, so a run's data order and augmentations are fixed by the state of
that one generator (checkpointed by the trainer).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from reglab.config import AugmentConfig


def epoch_steps(n: int, batch_size: int) -> int:
    """Batches in an epoch of `n` samples: ⌈n / b⌉ (b = `batch_size`, 0 or ≥ n: one full batch), less a
    last batch of a single sample, which is left out: BatchNorm cannot normalise one sample, and it
    is another random sample each epoch."""
    b = n if batch_size <= 0 or batch_size >= n else batch_size
    return n // b if n % b == 1 and n > b else -(-n // b)


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """One epoch of index batches: a random permutation of ``range(n)`` (on ``generator.device``)
    cut into `batch_size` pieces, the last one possibly smaller but not a single sample
    (`epoch_steps`); `batch_size` 0 or ≥ n gives one full batch. The permutation is drawn when this
    is called."""
    if n <= 0:
        raise ValueError(f"batch_indices: n must be positive (got {n})")
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return iter(perm.split(n if batch_size <= 0 or batch_size >= n else batch_size)[:epoch_steps(n, batch_size)])


class AugmentDraw(NamedTuple):
    """Random crop offsets ``(2, N, 1)`` and flip decisions ``(N, 1)`` for N samples (None when off);
    a pack stacks them over its runs, ``(K, 2, N, 1)`` and ``(K, N, 1)``."""

    offsets: Tensor | None
    flips: Tensor | None

    def rows(self, start: int, stop: int) -> AugmentDraw:
        """The draws of samples start..stop-1 (one batch of an epoch's draw); the sample axis is the
        second last, so this also slices draws stacked over runs."""
        return AugmentDraw(*(None if t is None else t[..., start:stop, :] for t in self))


def draw_augmentation(n: int, cfg: AugmentConfig, generator: torch.Generator) -> AugmentDraw | None:
    """Crop offsets ``randint(0, 2p+1, (2, n, 1))`` (when p = ``cfg.crop_padding`` > 0), then flips
    ``rand(n, 1) < 0.5`` (when ``cfg.flip``), from `generator`, on its device; None when both are off.
    A trainer draws once per epoch for all its samples and gives each batch its `AugmentDraw.rows`."""
    if not cfg.crop_padding and not cfg.flip:
        return None
    device, p = generator.device, cfg.crop_padding
    offsets = torch.randint(0, 2 * p + 1, (2, n, 1), generator=generator, device=device) if p else None
    flips = torch.rand(n, 1, generator=generator, device=device) < 0.5 if cfg.flip else None
    return AugmentDraw(offsets, flips)


def apply_augmentation(x: Tensor, cfg: AugmentConfig, draw: AugmentDraw | None) -> Tensor:
    """Random crop and horizontal flip of images ``(N, C, H, W)``, per sample, in one gather.

    Crop: zero-pad by ``p = cfg.crop_padding`` on each side and take the H×W window at the sample's
    offsets (dy, dx) ∈ {0, …, 2p}². Flip: mirror the result where the sample's flip is set. Returns
    `x` itself when `draw` is None."""
    if draw is None:
        return x
    if x.dim() != 4:
        raise ValueError(f"data.augment: crop and flip need images (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    p = cfg.crop_padding
    rows = torch.arange(h, device=x.device).expand(n, h)
    cols = torch.arange(w, device=x.device).expand(n, w)
    if draw.offsets is not None:
        x = F.pad(x, (p, p, p, p))
        dy, dx = draw.offsets
        rows, cols = rows + dy, cols + dx
    if draw.flips is not None:
        cols = torch.where(draw.flips, cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def augment_images(x: Tensor, cfg: AugmentConfig, generator: torch.Generator) -> Tensor:
    """`apply_augmentation` of a fresh `draw_augmentation` for the N images of `x` (same generator
    device as x). Returns `x` itself when crop and flip are both off."""
    return apply_augmentation(x, cfg, draw_augmentation(x.shape[0], cfg, generator))
