"""DropBlock: Ghiasi, Lin & Le (2018), *DropBlock: a regularization method for convolutional networks*,
NeurIPS.

Drops contiguous ``block_size × block_size`` squares of each feature map (one mask per sample and
channel, as timm's ``drop_block_fast_2d``) and rescales the kept activations by the kept fraction.
Seeds (block top-left corners) are drawn only where a whole block fits, with the paper's rate

    γ = p / b² · (H·W) / ((H − b + 1)(W − b + 1)),

so a fraction ≈ p of the activations is dropped (less where blocks overlap: 0.243 for p = 0.3, b = 7
on 14×14 maps; docs/regularizers.md); the seed mask
is turned into blocks by a stride-1 max-pool. Tensor operations only, so it runs under
``torch.func.vmap(..., randomness="different")``. Identity at eval or when p = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reglab.regularize.dropout import uniform_dtype

__all__ = ["DropBlock2d", "drop_block_2d"]


def drop_block_2d(x: torch.Tensor, p: float, block_size: int) -> torch.Tensor:
    """DropBlock on an (N, C, H, W) tensor, training behaviour (always random)."""
    h, w = x.shape[-2:]
    b = min(block_size, h, w)  # a block never exceeds the feature map (timm's clipping)
    gamma = p * h * w / (b * b * (h - b + 1) * (w - b + 1))
    uniform = torch.rand_like(x[..., : h - b + 1, : w - b + 1], dtype=uniform_dtype(x.dtype))
    seeds = (uniform < gamma).to(x.dtype)  # (N, C, H-b+1, W-b+1)
    padded = F.pad(seeds, (b - 1, b - 1, b - 1, b - 1))  # (N, C, H+b-1, W+b-1)
    dropped = F.max_pool2d(padded, kernel_size=b, stride=1)  # (N, C, H, W): 1 inside every seeded block
    keep = 1.0 - dropped
    kept = keep.sum(dtype=uniform.dtype)  # a float16 sum overflows past 65504 kept activations
    scale = keep.numel() / kept.clamp_min(1.0)  # renormalise by the kept fraction
    return x * keep * scale


class DropBlock2d(nn.Module):
    """DropBlock with drop fraction `p` and square blocks of side `block_size` (see module docstring)."""

    def __init__(self, p: float, block_size: int = 3):
        super().__init__()
        if not 0.0 <= p < 1.0 or block_size < 1:
            raise ValueError(f"need 0 <= p < 1 and block_size >= 1 (got p={p}, block_size={block_size})")
        self.p, self.block_size = float(p), int(block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return drop_block_2d(x, self.p, self.block_size)

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}, block_size={self.block_size}"
