"""Every theory figure builds on the Agg canvas, leaves pyplot untouched and saves a PNG."""

import sys

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from reglab.theory import CondensationTracker, cosine_similarity_matrix, neuron_features, plots


def test_all_figures(tmp_path):
    torch.manual_seed(0)
    hidden, out = nn.Linear(1, 20), nn.Linear(20, 1)
    alphas = torch.linspace(-1, 1, 11)
    tracker = CondensationTracker()
    for epoch in (1, 2, 3):
        tracker(epoch, nn.Sequential(hidden, nn.ReLU(), out), {})
    figures = {
        "curve": plots.plot_landscape_1d(alphas, {"dropout": alphas**2, "plain": 2 * alphas**2}, log=False,
                                         path=tmp_path / "curve.png"),
        "contour": plots.plot_landscape_2d(alphas, alphas[:5], alphas[:, None] ** 2 + alphas[:5] ** 2,
                                           path=tmp_path / "contour.png"),
        "scatter": plots.plot_neuron_features(neuron_features(hidden, out), path=tmp_path / "scatter.png"),
        "heat": plots.plot_cosine_similarity(cosine_similarity_matrix(hidden),
                                                order=torch.arange(19, -1, -1), path=tmp_path / "heat.png"),
        "ratio": plots.plot_effective_ratio({"a": tracker.history, "b": tracker.history},
                                            path=tmp_path / "ratio.png"),
    }
    for name, fig in figures.items():
        assert isinstance(fig, Figure)
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if "matplotlib.pyplot" in sys.modules:
        assert not sys.modules["matplotlib.pyplot"].get_fignums()


def test_neuron_scatter_needs_angles():
    with pytest.raises(ValueError, match="1-D input with bias"):
        plots.plot_neuron_features(neuron_features(nn.Linear(3, 4)))
