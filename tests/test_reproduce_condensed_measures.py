"""The condensation measures of stacked nets, worked by hand from the weights: rescaled amplitudes, the relative
change of the first layer, the 95% half-width of a seed summary."""

import math

import pytest
import torch

from reglab.reproduce.condensed import condensation, features, summary
from reglab.reproduce.stacked import init_nets


def _nets(seeds):
    return init_nets([1, 12, 1], [1.0, 0.3], [0.0] * len(seeds), activation="relu", seeds=seeds)


def test_amplitude_is_a_times_norm_of_w_b_rescaled_to_max_one():
    nets = _nets([5, 6])
    for t in range(2):
        w, b, a = nets.weights[0][t].detach(), nets.biases[0][t].detach(), nets.weights[1][t].detach()
        amplitude = a[0].abs() * torch.sqrt(w[:, 0] ** 2 + b**2)
        weights, angle, rescaled = features(nets, t)
        torch.testing.assert_close(rescaled, amplitude / amplitude.max())
        torch.testing.assert_close(weights, torch.stack([w[:, 0], b], 1))
        torch.testing.assert_close(angle, torch.atan2(b, w[:, 0]))


def test_relative_change_is_relative_to_the_initial_weights():
    initial = _nets([1])
    moved = initial.clone()
    with torch.no_grad():
        moved.weights[0].mul_(3.0)  # W = 3·W0 on the input weights, biases kept
    w0, b0 = initial.weights[0][0, :, 0].detach(), initial.biases[0][0].detach()
    expected = (2 * w0).norm() / torch.sqrt((w0**2).sum() + (b0**2).sum())
    assert condensation(moved, 0, initial)["relative_change"] == pytest.approx(expected.item(), rel=1e-5)


def test_summary_half_width_is_the_student_t_interval_by_hand():
    s = summary([1.0, 2.0, 3.0])  # sd 1, t(0.975, 2 df) = 4.302653
    assert s["mean"] == pytest.approx(2.0) and s["n"] == 3 and s["values"] == [1.0, 2.0, 3.0]
    assert s["ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
