"""Figures of the theory results, built on `matplotlib.figure.Figure` with the Agg canvas.

No pyplot: nothing is registered globally, so figures are garbage-collected like any object and
nothing opens a window. Every function returns the Figure and, with `path`, also saves it as PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reglab.theory.condensation import NeuronFeatures

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


def _array(values: ArrayLike) -> np.ndarray:
    return values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def _figure(figsize: tuple[float, float] = (5.0, 3.5)) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _done(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def plot_landscape_1d(alphas: ArrayLike, losses: ArrayLike | Mapping[str, ArrayLike], *, xlabel: str = "α",
                      log: bool = False, path: str | Path | None = None) -> Figure:
    """Loss curve(s) L(θ + α·d) over α; `losses` one curve or {label: curve}."""
    fig = _figure()
    ax = fig.add_subplot()
    curves = losses if isinstance(losses, Mapping) else {"": losses}
    for label, curve in curves.items():
        ax.plot(_array(alphas), _array(curve), label=label or None)
    ax.set(xlabel=xlabel, ylabel="loss", yscale="log" if log else "linear")
    if len(curves) > 1:
        ax.legend()
    return _done(fig, path)


def plot_landscape_2d(alphas: ArrayLike, betas: ArrayLike, surface: ArrayLike, *, levels: int = 30,
                      path: str | Path | None = None) -> Figure:
    """Contours of L(θ + α·d1 + β·d2); `surface[i, j]` at (α_i, β_j); the trained point marked at 0."""
    fig = _figure((4.5, 4.0))
    ax = fig.add_subplot()
    a, b = np.meshgrid(_array(alphas), _array(betas), indexing="ij")
    contours = ax.contour(a, b, _array(surface), levels=levels, cmap="viridis")
    fig.colorbar(contours, ax=ax, label="loss")
    ax.plot([0], [0], "k*")
    ax.set(xlabel="α (d1)", ylabel="β (d2)", aspect="equal")
    return _done(fig, path)


def plot_neuron_features(features: NeuronFeatures, *, path: str | Path | None = None) -> Figure:
    """Scatter of neurons at (angle θ_k, amplitude A_k): condensed neurons share an angle (1-D input)."""
    if features.angle is None:
        raise ValueError("angles exist only for 1-D input with bias; use plot_cosine_similarity")
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(_array(features.angle), _array(features.amplitude), s=8)
    ax.set(xlabel="orientation θ = atan2(b, w)", ylabel="amplitude |a|·‖(w, b)‖", xlim=(-np.pi, np.pi))
    return _done(fig, path)


def plot_cosine_similarity(matrix: ArrayLike, *, order: ArrayLike | None = None,
                           path: str | Path | None = None) -> Figure:
    """Heatmap of the neurons' pairwise cosine similarities in [−1, 1]; `order` permutes the neurons."""
    m = _array(matrix)
    if order is not None:
        idx = _array(order).astype(int)
        m = m[np.ix_(idx, idx)]
    fig = _figure((4.5, 4.0))
    ax = fig.add_subplot()
    image = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="cosine similarity")
    ax.set(xlabel="neuron", ylabel="neuron")
    return _done(fig, path)


def plot_effective_ratio(epochs: Sequence[Mapping] | Mapping[str, Sequence[Mapping]], *,
                         path: str | Path | None = None) -> Figure:
    """Effective ratio over epochs from epoch records (`RunResult.epochs`, `CondensationTracker.history`)
    holding ``"epoch"`` and ``"effective_ratio/<layer>"`` keys; {run label: records} overlays runs."""
    runs = epochs if isinstance(epochs, Mapping) else {"": epochs}
    fig = _figure()
    ax = fig.add_subplot()
    for run, records in runs.items():
        keys = sorted({k for r in records for k in r if k.startswith("effective_ratio/")})
        for key in keys:
            points = [(r["epoch"], r[key]) for r in records if key in r]
            label = " ".join(s for s in (run, key.removeprefix("effective_ratio/")) if s)
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=label)
    ax.set(xlabel="epoch", ylabel="effective ratio", ylim=(0, 1.05))
    ax.legend()
    return _done(fig, path)


def plot_hessian_density(density, *, sigma: float | None = None, points: int = 1000,
                         path: str | Path | None = None) -> Figure:
    """The Hessian eigenvalue density of a `SpectralDensity` (SLQ), smoothed by a Gaussian of width `sigma`
    (default 1% of the spread of the nodes), on a log scale like Ghorbani et al. (2019)."""
    nodes = torch.cat(density.nodes)
    low, high = nodes.min().item(), nodes.max().item()
    width = max(high - low, 1e-12)
    sigma = sigma or 0.01 * width
    grid = torch.linspace(low - 0.05 * width, high + 0.05 * width, points, dtype=torch.float64)
    fig = _figure()
    ax = fig.add_subplot()
    ax.semilogy(_array(grid), _array(density.density(grid, sigma).clamp_min(1e-12)))
    ax.set(xlabel="eigenvalue", ylabel="density")
    return _done(fig, path)
