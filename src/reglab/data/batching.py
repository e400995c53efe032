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
    """Per-sample draws for N samples (None when off): crop offsets ``(2, N, 1)``, flip decisions
    ``(N, 1)``, rotation angles in degrees ``(N, 1)`` and cutout centres ``(2, N, 1)`` (row, column) as
    fractions in [0, 1) of the height and width; a pack stacks them over its runs, ``(K, …)``."""

    offsets: Tensor | None
    flips: Tensor | None
    angles: Tensor | None = None
    centres: Tensor | None = None

    def rows(self, start: int, stop: int) -> AugmentDraw:
        """The draws of samples start..stop-1 (one batch of an epoch's draw); the sample axis is the
        second last, so this also slices draws stacked over runs."""
        return AugmentDraw(*(None if t is None else t[..., start:stop, :] for t in self))


def draw_augmentation(n: int, cfg: AugmentConfig, generator: torch.Generator) -> AugmentDraw | None:
    """Per-sample draws from `generator`, on its device, in this order, each only when on (so a new
    option leaves the draws before it as they were): crop offsets ``randint(0, 2p+1, (2, n, 1))`` (p =
    ``cfg.crop_padding``), flips ``rand(n, 1) < 0.5`` (``cfg.flip``), angles uniform in [−d, d] degrees
    ``(n, 1)`` (d = ``cfg.rotate``), cutout centres ``rand(2, n, 1)`` (``cfg.cutout``); None when all
    are off. A trainer draws once per epoch for all its samples and gives each batch its `AugmentDraw.rows`."""
    if not (cfg.crop_padding or cfg.flip or cfg.rotate or cfg.cutout):
        return None
    device, p, d = generator.device, cfg.crop_padding, cfg.rotate
    offsets = torch.randint(0, 2 * p + 1, (2, n, 1), generator=generator, device=device) if p else None
    flips = torch.rand(n, 1, generator=generator, device=device) < 0.5 if cfg.flip else None
    angles = torch.empty(n, 1, device=device).uniform_(-d, d, generator=generator) if d else None
    centres = torch.rand(2, n, 1, generator=generator, device=device) if cfg.cutout else None
    return AugmentDraw(offsets, flips, angles, centres)


def apply_augmentation(x: Tensor, cfg: AugmentConfig, draw: AugmentDraw | None) -> Tensor:
    """Augmentation of images ``(N, C, H, W)``, per sample, with O(1) kernels whatever N, in this order:

    1. rotation by the sample's angle (`rotate`) about the image centre, so that a later crop does not
       move the centre of the turn;
    2. crop: zero-pad by ``p = cfg.crop_padding`` on each side and take the H×W window at the sample's
       offsets (dy, dx) ∈ {0, …, 2p}²;
    3. flip: mirror the result where the sample's flip is set (crop and flip are one gather);
    4. cutout (`cutout`) last, as DeVries & Taylor apply it after the other augmentations.

    Rotation, padding and cutout fill with 0: the training mean once inputs are standardised
    (``data.normalize``). Returns `x` itself when `draw` is None."""
    if draw is None:
        return x
    if x.dim() != 4:
        raise ValueError(f"data.augment: augmentation needs images (N, C, H, W), got shape {tuple(x.shape)}")
    if draw.angles is not None:
        x = rotate(x, draw.angles)
    if draw.offsets is not None or draw.flips is not None:
        x = crop_and_flip(x, cfg.crop_padding, draw.offsets, draw.flips)
    if draw.centres is not None:
        x = cutout(x, cfg.cutout, draw.centres)
    return x


def rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Images ``(N, C, H, W)`` each turned by its angle ``(N, 1)`` in degrees, counter-clockwise as
    displayed (row 0 at the top; +90° is ``torch.rot90(x, 1, (2, 3))``), about the image centre.

    Output pixel (u, v) (column right, row down, from the centre, in pixels) reads the input at
    (u cos θ − v sin θ, u sin θ + v cos θ), bilinearly, 0 outside the image: `F.affine_grid` and
    `F.grid_sample` with ``align_corners=False``, where a pixel spans 2/W × 2/H of the grid's [−1, 1]²,
    whence the H/W factors (a non-square image turns in pixel units), and pixel centres sit at
    (2i + 1)/W − 1, so a quarter turn of a square image maps pixel centres onto pixel centres."""
    n, c, h, w = x.shape
    angle = torch.deg2rad(degrees.to(x.dtype))
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.cat([cos, -sin * (h / w), zero, sin * (w / h), cos, zero], 1).view(n, 2, 3)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_and_flip(x: Tensor, p: int, offsets: Tensor | None, flips: Tensor | None) -> Tensor:
    """Images ``(N, C, H, W)`` zero-padded by `p` and cropped back to H×W at `offsets` ``(2, N, 1)``
    (rows, columns), then mirrored where `flips` ``(N, 1)`` is set (None: no crop / no flip), in one gather."""
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).expand(n, h)
    cols = torch.arange(w, device=x.device).expand(n, w)
    if offsets is not None:
        x = F.pad(x, (p, p, p, p))
        dy, dx = offsets
        rows, cols = rows + dy, cols + dx
    if flips is not None:
        cols = torch.where(flips, cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def cutout(x: Tensor, side: int, centres: Tensor) -> Tensor:
    """Cutout (DeVries & Taylor 2017, "Improved regularization of convolutional neural networks with
    cutout"): images ``(N, C, H, W)`` with one `side`×`side` square set to 0 in every channel, its centre
    (cy, cx) = (⌊u·H⌋, ⌊v·W⌋) for the sample's (u, v) ∈ [0, 1)² in `centres` ``(2, N, 1)``, i.e. uniform
    over the pixels (to the 2⁻²⁴ resolution of `torch.rand`). The square covers rows cy − ⌊s/2⌋ …
    cy − ⌊s/2⌋ + s − 1 and the same columns around cx (the paper's code for even s), clipped to the
    image, so near a border less of it is cut."""
    def covered(fraction: Tensor, size: int) -> Tensor:  # (N, size): the positions inside the square
        start = (fraction * size).long() - side // 2
        position = torch.arange(size, device=x.device)
        return (position >= start) & (position < start + side)

    rows, cols = covered(centres[0], x.shape[2]), covered(centres[1], x.shape[3])
    return x.masked_fill((rows[:, :, None] & cols[:, None, :])[:, None], 0)


def augment_images(x: Tensor, cfg: AugmentConfig, generator: torch.Generator) -> Tensor:
    """`apply_augmentation` of a fresh `draw_augmentation` for the N images of `x` (same generator
    device as x). Returns `x` itself when augmentation is off."""
    return apply_augmentation(x, cfg, draw_augmentation(x.shape[0], cfg, generator))
