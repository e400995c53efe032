"""AugmentDraw.rows and flip decisions against hand-built draws (found by mutation testing)."""

from __future__ import annotations

import torch

from reglab.config import AugmentConfig
from reglab.data import AugmentDraw, apply_augmentation


def test_rows_slices_the_sample_axis_of_single_and_stacked_draws():
    n = 6
    offsets = torch.stack([torch.arange(n), 10 + torch.arange(n)])[..., None]  # (2, N, 1): dy = i, dx = 10 + i
    flips = (torch.arange(n) % 2 == 1)[:, None]  # (N, 1)
    part = AugmentDraw(offsets, flips).rows(2, 5)
    assert part.offsets.shape == (2, 3, 1) and part.flips.shape == (3, 1)
    assert part.offsets[0, :, 0].tolist() == [2, 3, 4] and part.offsets[1, :, 0].tolist() == [12, 13, 14]
    assert part.flips[:, 0].tolist() == [False, True, False]
    stacked = AugmentDraw(torch.stack([offsets, 100 + offsets]), torch.stack([flips, ~flips])).rows(4, 6)
    assert stacked.offsets.shape == (2, 2, 2, 1) and stacked.flips.shape == (2, 2, 1)
    assert stacked.offsets[1, 1, :, 0].tolist() == [114, 115]
    assert stacked.flips[1, :, 0].tolist() == [True, False]
    assert AugmentDraw(None, flips).rows(0, 2).offsets is None


def test_a_set_flip_mirrors_and_an_unset_one_keeps():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    out = apply_augmentation(x, AugmentConfig(flip=True), AugmentDraw(None, torch.tensor([[True], [False]])))
    assert out[0].tolist() == [[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]]
    assert torch.equal(out[1], x[1])


def test_crop_offsets_are_rows_then_columns():
    """offsets[0] shifts rows (dy), offsets[1] columns (dx), as documented: (dy, dx) = (0, 2) with p = 1
    takes the window one column right of the original, zero-padded on the right."""
    x = (1 + torch.arange(9, dtype=torch.float32)).reshape(1, 1, 3, 3)
    draw = AugmentDraw(torch.tensor([0, 2]).reshape(2, 1, 1), None)
    out = apply_augmentation(x, AugmentConfig(crop_padding=1), draw)
    assert out[0, 0].tolist() == [[0.0, 0.0, 0.0], [2.0, 3.0, 0.0], [5.0, 6.0, 0.0]]
