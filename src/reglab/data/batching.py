"""Mini-batches and image augmentation on the training device, driven by one `torch.Generator`.

Nothing here synchronises with the host: index permutations and random offsets are drawn on the
generator's device and used there, so a run's data order and augmentations are fixed by the state of
that one generator (checkpointed by the trainer).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from reglab.config import AugmentConfig


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """One epoch of index batches: a random permutation of ``range(n)`` (on ``generator.device``)
    cut into `batch_size` pieces, the last one possibly smaller; `batch_size` 0 or ≥ n gives one
    full batch. The permutation is drawn when this is called."""
    if n <= 0:
        raise ValueError(f"batch_indices: n must be positive (got {n})")
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return iter(perm.split(n if batch_size <= 0 or batch_size >= n else batch_size))


def augment_images(x: Tensor, cfg: AugmentConfig, generator: torch.Generator) -> Tensor:
    """Random crop and horizontal flip of images ``(N, C, H, W)``, per sample, in one gather.

    Crop: zero-pad by ``p = cfg.crop_padding`` on each side and take the H×W window at offsets
    (dy, dx) drawn uniformly from {0, …, 2p}² per sample. Flip (``cfg.flip``): mirror the result with
    probability 1/2 per sample. Random draws, in this order: offsets ``randint(0, 2p+1, (2, N))`` (when
    p > 0), flips ``rand(N) < 0.5`` (when flip), all from `generator`, which must be on x's device.
    Returns `x` itself when both are off.
    """
    if not cfg.crop_padding and not cfg.flip:
        return x
    if x.dim() != 4:
        raise ValueError(f"augment_images expects images (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    p = cfg.crop_padding
    rows = torch.arange(h, device=x.device).expand(n, h)
    cols = torch.arange(w, device=x.device).expand(n, w)
    if p:
        x = F.pad(x, (p, p, p, p))
        dy, dx = torch.randint(0, 2 * p + 1, (2, n, 1), generator=generator, device=x.device)
        rows, cols = rows + dy, cols + dx
    if cfg.flip:
        flip = torch.rand(n, 1, generator=generator, device=x.device) < 0.5
        cols = torch.where(flip, cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
