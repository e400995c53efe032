"""The theory figures draw the numbers they are given: read back from the Figure's artists."""

import math

import numpy as np
import torch
from torch import nn

from reglab.theory import neuron_features, plots
from reglab.theory.hessian import SpectralDensity


def test_landscape_curve_draws_alpha_against_its_loss():
    alphas = torch.linspace(-1, 1, 5)
    fig = plots.plot_landscape_1d(alphas, {"a": alphas**2, "b": alphas + 3})
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    np.testing.assert_allclose(lines[0].get_xdata(), [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_allclose(lines[0].get_ydata(), [1, 0.25, 0, 0.25, 1])
    np.testing.assert_allclose(lines[1].get_ydata(), [2, 2.5, 3, 3.5, 4])


def test_cosine_heatmap_permutes_rows_and_columns():
    matrix = torch.tensor([[1.0, 0.1, 0.2], [0.1, 1.0, 0.3], [0.2, 0.3, 1.0]])
    image = plots.plot_cosine_similarity(matrix, order=torch.tensor([2, 0, 1])).axes[0].get_images()[0]
    expected = [[1.0, 0.2, 0.3], [0.2, 1.0, 0.1], [0.3, 0.1, 1.0]]  # entry (i, j) = matrix[order[i], order[j]]
    np.testing.assert_allclose(np.asarray(image.get_array()), expected)


def test_neuron_scatter_is_angle_against_amplitude():
    hidden, out = nn.Linear(1, 3), nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        hidden.weight.copy_(torch.tensor([[1.0], [0.0], [-3.0]]))
        hidden.bias.copy_(torch.tensor([1.0, 2.0, -3.0]))
        out.weight.copy_(torch.tensor([[2.0, -1.0, 0.5]]))
    offsets = plots.plot_neuron_features(neuron_features(hidden, out)).axes[0].collections[0].get_offsets()
    # angle atan2(b, w); amplitude |a|·‖(w, b)‖
    expected = [[math.pi / 4, 2 * math.sqrt(2)], [math.pi / 2, 2.0], [-3 * math.pi / 4, 1.5 * math.sqrt(2)]]
    np.testing.assert_allclose(offsets, expected, rtol=1e-6)


def test_density_curve_is_the_gaussian_mixture_with_one_percent_width():
    density = SpectralDensity(nodes=[torch.tensor([0.0, 10.0], dtype=torch.float64)],
                              weights=[torch.tensor([0.25, 0.75], dtype=torch.float64)], size=2)
    line = plots.plot_hessian_density(density, points=201).axes[0].get_lines()[0]
    x, y = line.get_xdata(), line.get_ydata()
    np.testing.assert_allclose(x[[0, -1]], [-0.5, 10.5])  # 5% of the spread beyond the nodes
    sigma = 0.1  # 1% of the spread 10

    def gauss(t, mu):
        return np.exp(-((t - mu) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))

    expected = np.maximum(0.25 * gauss(x, 0.0) + 0.75 * gauss(x, 10.0), 1e-12)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
