"""DropBlock (Ghiasi et al. 2018) against its definition: identity at eval, renormalisation, drop rate,
contiguous blocks, vmap."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from reglab.regularize.dropblock import DropBlock2d


def test_identity_at_eval_and_p_zero():
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(DropBlock2d(0.3, 3).eval()(x), x)
    assert torch.equal(DropBlock2d(0.0, 3).train()(x), x)
    with pytest.raises(ValueError):
        DropBlock2d(1.0, 3)


def test_kept_activations_renormalised_mean_one():
    torch.manual_seed(0)
    y = DropBlock2d(0.2, 3).train()(torch.ones(8, 4, 12, 12))
    kept = y[y != 0]
    assert torch.allclose(kept, kept[0].expand_as(kept))  # one scale for every kept unit
    assert y.mean().item() == pytest.approx(1.0, abs=1e-5)  # scale = 1 / kept fraction


def drop_probabilities(p: float, b: int, h: int, w: int) -> torch.Tensor:
    """Exact P(unit (i, j) dropped) when seeds (block top-left corners) fall independently at the
    (H−b+1)(W−b+1) valid positions with the paper's rate γ = p/b² · HW/((H−b+1)(W−b+1)): a unit is
    kept only if none of the seeds whose block covers it is drawn."""
    gamma = p * h * w / (b * b * (h - b + 1) * (w - b + 1))

    def cover(i: int, n: int) -> int:  # seed rows (or columns) whose block covers index i
        return min(i, n - b) - max(0, i - b + 1) + 1

    return torch.tensor([[1 - (1 - gamma) ** (cover(i, h) * cover(j, w)) for j in range(w)]
                         for i in range(h)], dtype=torch.float64)


@pytest.mark.parametrize(("p", "b"), [(0.1, 3), (0.25, 5), (0.1, 2)])
def test_dropped_fraction_matches_the_seed_rate(p, b):
    torch.manual_seed(2)
    y = DropBlock2d(p, b).train()(torch.ones(64, 8, 16, 16))
    fraction = (y == 0).float().mean().item()
    assert fraction == pytest.approx(drop_probabilities(p, b, 16, 16).mean().item(), abs=0.01)
    assert 0.75 * p < fraction < 1.05 * p  # ≈ p (overlapping blocks make it a little less)


def test_the_drop_fractions_quoted_in_the_docs():
    """docs/regularizers.md: p is a target, overlapping blocks drop less (exact, and by Monte Carlo)."""
    assert drop_probabilities(0.1, 3, 8, 8).mean().item() == pytest.approx(0.095, abs=5e-4)
    assert drop_probabilities(0.3, 7, 14, 14).mean().item() == pytest.approx(0.243, abs=5e-4)
    torch.manual_seed(3)
    y = DropBlock2d(0.3, 7).train()(torch.ones(64, 128, 14, 14))  # 8192 maps of ≈ 1.2 blocks: s.e. ≈ 0.002
    assert (y == 0).float().mean().item() == pytest.approx(0.243, abs=0.008)


def test_monte_carlo_mean_per_unit():
    # E[y_ij] = x_ij · P(kept_ij) / (overall kept fraction): the total is preserved, not each unit
    torch.manual_seed(1)
    x = torch.rand(1, 1, 10, 10) + 0.5
    y = DropBlock2d(0.15, 3).train()(x.expand(4000, 4, 10, 10)).mean((0, 1))  # (10, 10)
    q = drop_probabilities(0.15, 3, 10, 10)
    expected = x[0, 0].double() * (1 - q) / (1 - q.mean())
    assert torch.allclose(y.double(), expected, atol=0.02)


@pytest.mark.parametrize("b", [2, 3, 4])
def test_dropped_units_form_whole_blocks(b):
    torch.manual_seed(3)
    mask = (DropBlock2d(0.2, b).train()(torch.ones(16, 2, 12, 12)) == 0).float()
    assert mask.sum() > 0
    # a union of b×b squares equals its morphological opening with a b×b square
    eroded = 1 - F.max_pool2d(1 - mask, b, stride=1)  # 1 where a whole b×b square (top-left here) is dropped
    opened = F.max_pool2d(F.pad(eroded, (b - 1,) * 4), b, stride=1)
    assert torch.equal(opened, mask)


def test_block_larger_than_the_map_is_clipped():
    torch.manual_seed(4)
    y = DropBlock2d(0.5, 7).train()(torch.ones(200, 1, 4, 4))
    per_map = (y == 0).flatten(1).float().mean(1)
    assert set(per_map.unique().tolist()) <= {0.0, 1.0}  # 4×4 block: whole map dropped or kept
    assert y.shape == (200, 1, 4, 4)


def test_vmap_draws_different_masks():
    torch.manual_seed(5)
    y = vmap(DropBlock2d(0.3, 3).train(), randomness="different")(torch.ones(3, 4, 2, 10, 10))
    assert y.shape == (3, 4, 2, 10, 10)
    assert not torch.equal(y[0], y[1]) and not torch.equal(y[1], y[2])
    for copy in y:  # each copy renormalised on its own
        assert copy.mean().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_activations_get_the_float32_mask_and_scale(dtype):
    """Seeds are drawn from float32 uniforms and the kept count is summed in float32: a bfloat16 rand
    (0 with probability ≈ 1/512) would seed too many blocks, a float16 sum overflows past 65504."""
    x = torch.ones(256, 32, 8, 8)  # 524,288 activations
    torch.manual_seed(0)
    reference = DropBlock2d(0.1, 3).train()(x)
    torch.manual_seed(0)
    low = DropBlock2d(0.1, 3).train()(x.to(dtype))
    assert low.dtype == dtype
    assert torch.equal(low == 0, reference == 0)
    torch.testing.assert_close(low.float(), reference, rtol=1e-2, atol=0)
