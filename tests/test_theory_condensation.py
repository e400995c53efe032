"""Neuron features, cosine similarity and the effective ratio (greedy vs exact vs brute force)."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from reglab.theory import (
    CondensationTracker,
    CoverNotSolved,
    cosine_similarity_matrix,
    effective_ratio_exact,
    effective_ratio_greedy,
    neuron_features,
    neuron_weights,
)


def brute_force_ratio(w: np.ndarray, threshold: float) -> float:
    """Smallest subset of the neurons' own directions covering all (cos > threshold), by enumeration."""
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    cover = (u @ u.T > threshold) | np.eye(len(w), dtype=bool)
    m = len(w)
    for r in range(1, m + 1):
        if any(cover[:, list(subset)].any(1).all() for subset in itertools.combinations(range(m), r)):
            return r / m
    raise AssertionError("unreachable: every neuron covers itself")


def greedy_reference(w: np.ndarray, threshold: float) -> float:
    """The greedy cover by hand: take the direction covering most uncovered neurons, lowest index first."""
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    cover = (u @ u.T > threshold) | np.eye(len(w), dtype=bool)
    uncovered, chosen = set(range(len(w))), 0
    while uncovered:
        best = max(range(len(w)), key=lambda j: (len(uncovered & set(np.flatnonzero(cover[:, j]))), -j))
        uncovered -= set(np.flatnonzero(cover[:, best]))
        chosen += 1
    return chosen / len(w)


def clustered(k: int, per: int, d: int, spread: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(k, d, generator=g), dim=1)
    w = centres.repeat_interleave(per, 0) + spread * torch.randn(k * per, d, generator=g)
    return w * torch.rand(k * per, 1, generator=g).add(0.5)  # amplitudes do not matter


def test_neuron_features_linear_with_bias():
    torch.manual_seed(0)
    hidden, out = nn.Linear(1, 6), nn.Linear(6, 2)
    f = neuron_features(hidden, out)
    w, b = hidden.weight.detach()[:, 0], hidden.bias.detach()
    norm_in = torch.sqrt(w**2 + b**2)
    torch.testing.assert_close(f.amplitude, out.weight.detach().norm(dim=0) * norm_in)
    torch.testing.assert_close(f.direction, torch.stack([w, b], 1) / norm_in[:, None])
    torch.testing.assert_close(f.angle, torch.atan2(b, w))
    assert f.angle.min() >= -math.pi and f.angle.max() < math.pi


def test_neuron_features_raw_tensors():
    w = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    f = neuron_features(w, torch.tensor([2.0, -1.0]))
    torch.testing.assert_close(f.amplitude, torch.tensor([10.0, 2.0]))
    assert f.angle is None  # 2-D input without bias
    g = neuron_features(torch.tensor([[-1.0]]), bias=torch.tensor([0.0]))
    torch.testing.assert_close(g.angle, torch.tensor([-math.pi]))  # atan2(0, −1) = π mapped into [−π, π)


def test_neuron_weights_conv_and_cosine_matrix():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3)
    w = neuron_weights(conv)
    assert w.shape == (5, 3 * 9 + 1)
    torch.testing.assert_close(w[:, -1], conv.bias.detach())
    s = cosine_similarity_matrix(conv)
    wn = w.numpy()
    expected = wn @ wn.T / np.outer(np.linalg.norm(wn, axis=1), np.linalg.norm(wn, axis=1))
    np.testing.assert_allclose(s.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("seed", range(12))
def test_effective_ratio_greedy_vs_exact_on_small_cases(seed):
    g = torch.Generator().manual_seed(seed)
    m = 4 + seed % 7  # 4 … 10 neurons
    w = torch.randn(m, 2 + seed % 2, generator=g, dtype=torch.float64)
    threshold = [0.0, 0.3, 0.6, 0.8][seed % 4]
    exact = brute_force_ratio(w.numpy(), threshold)
    assert effective_ratio_exact(w, threshold) == pytest.approx(exact)
    greedy = effective_ratio_greedy(w, threshold)
    harmonic = sum(1 / i for i in range(1, m + 1))
    assert exact - 1e-12 <= greedy <= harmonic * exact + 1e-12


def test_greedy_can_exceed_the_minimum_within_its_bound():
    w = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert brute_force_ratio(w.numpy(), 0.0) == effective_ratio_exact(w, 0.0) == 2 / 8
    greedy = effective_ratio_greedy(w, 0.0)
    assert greedy == greedy_reference(w.numpy(), 0.0) > 2 / 8  # here greedy takes a third direction
    assert greedy <= sum(1 / i for i in range(1, 9)) * 2 / 8  # ≤ H(8)·r/m


@pytest.mark.parametrize(("k", "per", "d"), [(1, 10, 5), (3, 3, 4), (5, 40, 20), (10, 10, 50)])
def test_effective_ratio_of_clustered_neurons_is_k_over_m(k, per, d):
    w = clustered(k, per, d, spread=0.01, seed=k)
    assert effective_ratio_greedy(w) == pytest.approx(k / (k * per))
    if k * per <= 50:
        assert effective_ratio_exact(w) == pytest.approx(k / (k * per))


def test_effective_ratio_of_random_directions_in_high_dimension_is_one():
    w = torch.randn(200, 500, generator=torch.Generator().manual_seed(0))
    assert effective_ratio_greedy(w) == 1.0


def test_effective_ratio_threshold_is_strict_and_zero_neurons_count_alone():
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert effective_ratio_greedy(w, threshold=math.cos(math.pi / 4) + 1e-6) == pytest.approx(1.0)
    assert effective_ratio_greedy(w, threshold=0.5) == pytest.approx(2 / 3)


def test_effective_ratio_handles_1000_neurons():
    w = clustered(20, 50, 30, spread=0.01, seed=0)
    assert effective_ratio_greedy(w) == pytest.approx(20 / 1000)


def test_condensation_tracker_default_and_named_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 3))
    with torch.no_grad():
        model[0].weight.copy_(clustered(3, 4, 4, spread=0.0, seed=1))
        model[0].bias.zero_()
    tracker = CondensationTracker()
    assert tracker(1, model, {}) == {"effective_ratio/0": pytest.approx(3 / 12)}
    both = CondensationTracker(["0", "3"], threshold=0.9)(2, model, {})
    assert set(both) == {"effective_ratio/0", "effective_ratio/3"}
    assert tracker.history == [{"epoch": 1, "effective_ratio/0": pytest.approx(0.25)}]

    cnn = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4, 2))
    ratio = CondensationTracker()(1, cnn, {})["effective_ratio/0"]
    assert ratio == greedy_reference(torch.cat([cnn[0].weight.flatten(1), cnn[0].bias[:, None]], 1).detach().numpy(),
                                     0.95)
    with pytest.raises(ValueError, match="no nn.Linear"):
        CondensationTracker()(1, nn.Sequential(nn.ReLU()), {})


def test_effective_ratio_of_a_layer_counts_its_bias():
    # two neurons parallel in weight but opposite in bias: one direction without the bias, two with it
    weight = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    bias = torch.tensor([1.0, -2.0, 0.0])
    assert effective_ratio_greedy(weight) == effective_ratio_exact(weight) == 2 / 3
    layer = torch.nn.Linear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    assert effective_ratio_greedy(layer) == effective_ratio_exact(layer) == 1.0


def test_exact_cover_under_a_time_limit_is_proven_or_raises():
    """A cover the MILP solves instantly comes back exact; a zero time limit cannot prove optimality."""
    w = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(5, 1), torch.tensor([[0.0, 1.0]]).repeat(5, 1)])
    assert effective_ratio_exact(w, time_limit=30) == 2 / 10
    big = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(CoverNotSolved, match="not solved to optimality"):
        effective_ratio_exact(big, 0.5, time_limit=0.0)
