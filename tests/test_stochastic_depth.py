"""Stochastic depth (Huang et al. 2016) against its definition: survival rule, drop frequencies,
scaling conventions, batch mode, shape checks and vmap."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from reglab.config import ConfigError, StochasticDepthConfig
from reglab.regularize.stochastic_depth import Residual, StochasticDepth, survival_probabilities


def sd(**kw) -> StochasticDepthConfig:
    return StochasticDepthConfig(**kw)


# ------------------------------------------------------------------------------------ survival rule
def test_linear_rule_matches_hand_formula():
    L, rate = 5, 0.5
    expected = [1 - (l / L) * (1 - (1 - rate)) for l in range(1, L + 1)]  # p_l = 1 − (l/L)(1 − p_L)
    assert survival_probabilities(L, sd(rate=rate)) == pytest.approx(expected)
    assert survival_probabilities(L, sd(rate=rate))[-1] == pytest.approx(0.5)  # last block: 1 − rate
    assert survival_probabilities(3, sd(rate=0.3, rule="constant")) == pytest.approx([0.7, 0.7, 0.7])
    assert survival_probabilities(4, sd(rate=0.0)) == [1.0] * 4
    assert survival_probabilities(0, sd(rate=0.5)) == []


def test_selected_blocks_count_only_themselves():
    # L and l run over the selected blocks only; the others are never dropped
    assert survival_probabilities(3, sd(rate=0.5, blocks=[0])) == pytest.approx([0.5, 1.0, 1.0])
    assert survival_probabilities(4, sd(rate=0.4, blocks=[3, 1])) == pytest.approx([1.0, 0.8, 1.0, 0.6])
    assert survival_probabilities(3, sd(rate=0.4, rule="constant", blocks=[2])) == pytest.approx([1, 1, 0.6])


@pytest.mark.parametrize("blocks", [[3], [-1], [0, 7]])
def test_block_index_out_of_range(blocks):
    with pytest.raises(ConfigError, match=r"^regularize\.stochastic_depth\.blocks"):
        survival_probabilities(3, sd(rate=0.5, blocks=blocks))


# ----------------------------------------------------------------------------------------- the gate
def test_drop_frequency_matches_one_minus_p():
    torch.manual_seed(0)
    n = 20_000
    for p in survival_probabilities(4, sd(rate=0.6)):  # 0.85, 0.7, 0.55, 0.4
        gate = StochasticDepth(p).train()
        dropped = (gate(torch.ones(n, 3)) == 0).all(1).float().mean().item()
        assert abs(dropped - (1 - p)) < 4 * math.sqrt(p * (1 - p) / n)


def test_inverted_scaling_monte_carlo_mean_equals_eval_output():
    torch.manual_seed(1)
    block = Residual(nn.Linear(3, 3), gate=StochasticDepth(0.6, scaling="inverted"))
    x = torch.randn(1, 3).expand(40_000, 3)  # the same sample, 40k independent row draws
    with torch.no_grad():
        mean = block.train()(x).mean(0)
        branch = block.body(x[:1])[0]
        expected = block.eval()(x[:1])[0]
    assert torch.allclose(expected, x[0] + branch)  # eval: plain residual, no scaling
    sigma = branch.abs() * math.sqrt(0.4 / 0.6 / 40_000)
    assert ((mean - expected).abs() <= 5 * sigma + 1e-6).all()


def test_test_scaling_unscaled_in_training_and_p_times_branch_at_eval():
    torch.manual_seed(2)
    proj = nn.Linear(3, 4)
    block = Residual(nn.Linear(3, 4), proj, gate=StochasticDepth(0.7, scaling="test"))
    x = torch.randn(500, 3)
    with torch.no_grad():
        skip, branch = proj(x), block.body(x)
        y = block.train()(x)
        kept = torch.isclose(y, skip + branch, atol=1e-6).all(1)
        dropped = torch.isclose(y, skip, atol=1e-6).all(1)  # a dropped block passes proj(x) unchanged
        assert (kept ^ dropped).all() and kept.any() and dropped.any()
        assert torch.allclose(block.eval()(x), skip + 0.7 * branch, atol=1e-6)


def test_batch_mode_drops_the_whole_batch():
    torch.manual_seed(3)
    gate = StochasticDepth(0.5, mode="batch").train()
    outcomes = set()
    for _ in range(50):
        y = gate(torch.ones(16, 2, 3))
        assert len(torch.unique(y)) == 1  # all 0 or all 1/p
        outcomes.add(y[0, 0, 0].item())
    assert outcomes == {0.0, 2.0}


def test_identity_cases_and_repr():
    x = torch.randn(4, 3)
    assert torch.equal(StochasticDepth(1.0).train()(x), x)
    assert torch.equal(StochasticDepth(0.3).eval()(x), x)
    text = repr(StochasticDepth(0.25, mode="batch", scaling="test"))
    assert "p=0.25" in text and "batch" in text and "test" in text
    with pytest.raises(ValueError):
        StochasticDepth(0.0)


def test_shape_changing_block_without_shortcut_is_refused():
    with pytest.raises(ConfigError, match=r"^regularize\.stochastic_depth: block fc1 changes shape"):
        Residual(nn.Linear(3, 4), gate=StochasticDepth(0.5), name="fc1", in_shape=(3,), out_shape=(4,))
    block = Residual(nn.Linear(3, 4), gate=StochasticDepth(0.5), name="fc1")  # shapes unknown: at forward
    with pytest.raises(ConfigError, match="no shortcut"):
        block(torch.randn(2, 3))
    Residual(nn.Linear(3, 4), nn.Linear(3, 4), in_shape=(3,), out_shape=(4,))  # a projection is fine


# ------------------------------------------------------------------------------------------------ vmap
def test_gate_under_vmap_draws_different_masks():
    torch.manual_seed(4)
    gate = StochasticDepth(0.5).train()
    y = vmap(gate, randomness="different")(torch.ones(3, 64, 2))  # 3 stacked copies
    assert set(torch.unique(y).tolist()) <= {0.0, 2.0}
    assert not torch.equal(y[0], y[1]) and not torch.equal(y[1], y[2])


def test_residual_model_under_vmap_over_stacked_copies():
    torch.manual_seed(5)
    net = nn.Sequential(Residual(nn.Linear(4, 4), gate=StochasticDepth(0.5)),
                        Residual(nn.Linear(4, 4), gate=StochasticDepth(0.5, mode="batch", scaling="test")))
    params, buffers = stack_module_state([net, net, net])  # 3 identical copies

    def run(p, b, x):
        return functional_call(net, (p, b), (x,))

    x = torch.randn(32, 4)
    y = vmap(run, in_dims=(0, 0, None), randomness="different")(params, buffers, x)  # (3, 32, 4)
    assert y.shape == (3, 32, 4)
    assert not torch.allclose(y[0], y[1]) and not torch.allclose(y[1], y[2])
    net.eval()
    y_eval = vmap(run, in_dims=(0, 0, None), randomness="different")(params, buffers, x)
    assert torch.allclose(y_eval[0], net(x), atol=1e-6) and torch.allclose(y_eval[0], y_eval[2])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_low_precision_branch_is_gated_by_float32_draws(dtype):
    """Keep/skip compares a float32 uniform with the survival probability, whatever the branch dtype."""
    from reglab.models.deeper_cnn import replace_or_skip
    from reglab.regularize.stochastic_depth import gate_branch

    branch = torch.ones(4096, 1, 1, 1)
    torch.manual_seed(0)
    reference = gate_branch(branch, 0.7, mode="row", scaling="inverted", training=True)
    torch.manual_seed(0)
    low = gate_branch(branch.to(dtype), 0.7, mode="row", scaling="inverted", training=True)
    assert low.dtype == dtype and torch.equal(low == 0, reference == 0)
    x = torch.zeros(4096, 1, 1, 1)
    torch.manual_seed(0)
    kept = replace_or_skip(lambda t: t + 1, x, 0.7, mode="row", training=True)
    torch.manual_seed(0)
    kept_low = replace_or_skip(lambda t: t + 1, x.to(dtype), 0.7, mode="row", training=True)
    assert torch.equal(kept_low.float(), kept)


@pytest.mark.parametrize("keep", ["per sample", "float", "0-dim tensor"])
def test_the_replace_skip_blend_equals_the_zero_padded_formula_values_and_gradients(keep):
    """keep·out + (1 − keep)·pad(x) without building pad(x): the same numbers, bit for bit, forward and
    backward, alone and under vmap (as a pack runs it, a survival per run)."""
    from reglab.models.deeper_cnn import blend_with_padded

    def padded(out, x, k):
        return k * out + (1.0 - k) * torch.nn.functional.pad(x, (0, 0, 0, 0, 0, out.shape[1] - x.shape[1]))

    g = torch.Generator().manual_seed(0)
    out, x = torch.randn(6, 8, 5, 5, generator=g), torch.randn(6, 3, 5, 5, generator=g)
    k = {"per sample": (torch.rand(6, 1, 1, 1, generator=g) < 0.5).float(), "float": 0.3,
         "0-dim tensor": torch.tensor(0.7)}[keep]
    upstream = torch.randn(6, 8, 5, 5, generator=g)
    results = []
    for blend in (padded, blend_with_padded):
        leaves = out.clone().requires_grad_(), x.clone().requires_grad_()
        y = blend(*leaves, k)
        results.append((y, *torch.autograd.grad(y, leaves, upstream)))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
    runs = torch.stack([out, 2 * out]), torch.stack([x, -x])  # a pack of two runs
    survival = torch.tensor([0.25, 0.75])
    assert torch.equal(vmap(padded)(*runs, survival), vmap(blend_with_padded)(*runs, survival))


def test_a_replace_skip_block_under_bf16_autocast_stays_in_bf16():
    """The skipped input is the float32 image: blended as a float32 term it promoted the block's whole
    output, and the batch norm, ReLU and pooling after it, to float32 under autocast."""
    from reglab.models.deeper_cnn import ReplaceSkip

    block = ReplaceSkip(nn.Conv2d(1, 8, 3, padding=1), p=0.5)
    x = torch.randn(16, 1, 6, 6)
    for training in (True, False):
        block.train(training)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert block(x).dtype == torch.bfloat16
