"""The report's figures, each returned with the numbers behind it (a DataFrame saved as CSV beside it).

Matplotlib through `matplotlib.figure.Figure` and the Agg canvas only (no pyplot global state).
Curves are mean ± std bands over an arm's finished runs; diverged runs are left out and counted
in the legend.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reglab.study.results import Study

CURVES = (("train_loss", "train loss (training mode)"), ("test_loss", "test loss"),
          ("train_eval_acc", "train accuracy (eval mode)"), ("test_acc", "test accuracy"))
NORMS = (("weight_norm", "weight norm ‖w‖₂ (Linear/Conv weights)"), ("grad_norm", "mean gradient norm"))


@dataclass
class FigureData:
    name: str
    title: str
    caption: str
    figure: Figure
    numbers: pd.DataFrame

    def png(self, dpi: int = 100) -> bytes:
        buffer = io.BytesIO()
        FigureCanvasAgg(self.figure)  # Agg canvas, no pyplot
        self.figure.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()


def _colors(arms: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {arm: cmap(i % 10) for i, arm in enumerate(arms)}


def _label(study: Study, arm: str) -> str:
    runs = study.runs[study.runs["arm"] == arm]
    diverged = int((runs["status"] == "diverged").sum())
    label = arm.replace("$", r"\$")  # no mathtext from user strings
    return f"{label} ({diverged}/{len(runs)} diverged)" if diverged else label


def _finished_epochs(study: Study) -> pd.DataFrame:
    done = set(study.runs.loc[study.runs["status"] == "done", "run_id"])
    epochs = study.epochs
    return epochs[epochs["run_id"].isin(done)] if len(epochs) else epochs


def curve_stats(epochs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per arm and epoch: n, mean and std (ddof = 1) of `column` over runs."""
    if column not in epochs or epochs.empty:
        return pd.DataFrame(columns=["arm", "metric", "epoch", "n", "mean", "std"])
    grouped = epochs.groupby(["arm", "epoch"], sort=False)[column]
    out = grouped.agg(n="count", mean="mean", std=lambda s: s.std(ddof=1)).reset_index()
    return out.assign(metric=column)[["arm", "metric", "epoch", "n", "mean", "std"]]


def _band(ax, stats: pd.DataFrame, arm: str, color: tuple, label: str) -> None:
    s = stats[stats["arm"] == arm].sort_values("epoch")
    if s.empty:
        return
    mean, std = s["mean"].to_numpy(float), np.nan_to_num(s["std"].to_numpy(float))
    ax.plot(s["epoch"], mean, color=color, label=label, lw=1.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.fill_between(s["epoch"], mean - std, mean + std, color=color, alpha=0.18, lw=0)


def curves_figure(study: Study) -> FigureData:
    epochs, colors = _finished_epochs(study), _colors(study.arms)
    fig = Figure(figsize=(11, 7), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    tables = []
    for ax, (column, title) in zip(axes, CURVES, strict=True):
        stats = curve_stats(epochs, column)
        tables.append(stats)
        for arm in study.arms:
            _band(ax, stats, arm, colors[arm], _label(study, arm))
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # no finished run (all diverged): nothing to name
        axes[0].legend(fontsize=8)
    return FigureData("curves", "Training curves", "Mean ± std over seeds of each arm's finished runs.",
                      fig, pd.concat(tables, ignore_index=True))


def final_figure(study: Study, column: str = "final_test_acc") -> FigureData:
    runs, colors = study.runs, _colors(study.arms)
    done = runs[(runs["status"] == "done") & runs[column].notna()]
    fig = Figure(figsize=(max(6, 1.3 * len(study.arms) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    for i, arm in enumerate(study.arms):
        values = done.loc[done["arm"] == arm, column].to_numpy(float)
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
        ax.scatter(i + jitter, values, color=colors[arm], s=22, alpha=0.8, zorder=3)
        if len(values):
            sem = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
            ax.errorbar(i + 0.3, values.mean(), yerr=sem, fmt="D", color="black", ms=5, capsize=4)
    ax.set_xticks(range(len(study.arms)), [_label(study, a) for a in study.arms], rotation=20, ha="right")
    ax.set(ylabel=column.replace("_", " "), title=f"{column.replace('_', ' ')} per seed (◆ mean ± s.e.)")
    ax.grid(axis="y", alpha=0.3)
    numbers = done[["arm", "seed", "run_id", column]].reset_index(drop=True)
    return FigureData("final", "Per-seed results", "Each dot is one seed; diamonds are means ± standard "
                      "error. Diverged runs are not plotted and are counted in the labels.", fig, numbers)


def gap_figure(study: Study) -> FigureData:
    epochs, colors = _finished_epochs(study).copy(), _colors(study.arms)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    tables = []
    for ax, (name, a, b, title) in zip(axes, (
            ("gap_acc", "train_eval_acc", "test_acc", "accuracy gap: train (eval mode) − test"),
            ("gap_loss", "test_loss", "train_eval_loss", "loss gap: test − train (eval mode)")), strict=True):
        if a in epochs and b in epochs:
            epochs[name] = epochs[a] - epochs[b]
        stats = curve_stats(epochs, name)
        tables.append(stats)
        for arm in study.arms:
            _band(ax, stats, arm, colors[arm], _label(study, arm))
        ax.set(title=title, xlabel="epoch")
        ax.axhline(0, color="gray", lw=0.8)
        ax.grid(alpha=0.3)
    next((ax for ax in axes if ax.get_legend_handles_labels()[0]), axes[0]).legend(fontsize=8)  # regression: no acc
    return FigureData("gap", "Generalization gap", "Mean ± std over seeds; smaller is a smaller gap.",
                      fig, pd.concat(tables, ignore_index=True))


def norms_figure(study: Study) -> FigureData:
    """‖w‖₂ of the Linear/Conv weights at each epoch's end and the epoch's mean gradient norm, by arm."""
    epochs, colors = _finished_epochs(study), _colors(study.arms)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    tables = []
    for ax, (column, title) in zip(fig.subplots(1, 2), NORMS, strict=True):
        stats = curve_stats(epochs.dropna(subset=[column]) if column in epochs else epochs, column)
        tables.append(stats)
        for arm in study.arms:
            _band(ax, stats, arm, colors[arm], _label(study, arm))
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    caption = ("Left: the L2 norm of the Linear/Conv weights of the evaluated model (the EMA or SWA average where "
               "a run keeps one), what weight decay and L2 shrink. Right: the mean over the epoch's steps of the "
               "gradient's L2 norm before clipping. Mean ± std over seeds.")
    return FigureData("norms", "Weight and gradient norms", caption, fig, pd.concat(tables, ignore_index=True))


def stability_figure(study: Study) -> FigureData:
    stability, colors = study.stability(), _colors(study.arms)
    runs = study.runs[study.runs["status"] == "done"]
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(len(study.arms))
    for i, arm in enumerate(study.arms):
        values = runs.loc[runs["arm"] == arm, "fluctuation"].dropna().to_numpy(float)
        ax1.scatter(np.full(len(values), i), values, color=colors[arm], s=20, zorder=3)
    ax1.bar(x, stability["fluctuation_mean"], color=[colors[a] for a in study.arms], alpha=0.35)
    ax1.set(title="fluctuation: mean |Δ test loss|, last half", ylabel="test loss")
    ax2.bar(x, 100 * stability["spread_test_acc"], color=[colors[a] for a in study.arms], alpha=0.7)
    ax2.set(title="seed spread: mean over epochs of std(test acc)", ylabel="pp")
    for ax in (ax1, ax2):
        ax.set_xticks(x, [_label(study, a) for a in study.arms], rotation=20, ha="right")
        ax.grid(axis="y", alpha=0.3)
    return FigureData("stability", "Stability", "Left: dots are seeds, bars their mean. Right: across-seed "
                      "standard deviation of the test-accuracy curve, averaged over epochs.", fig, stability)


def effective_ratio_figure(study: Study) -> FigureData:
    """Effective ratio per epoch (`train.track_condensation`), one panel per tracked layer."""
    epochs, colors = _finished_epochs(study), _colors(study.arms)
    columns = sorted(c for c in epochs.columns if c.startswith("effective_ratio/"))
    fig = Figure(figsize=(max(5.5, 4.5 * len(columns)), 3.8), layout="constrained")
    axes = fig.subplots(1, len(columns), squeeze=False).ravel()
    tables = []
    for ax, column in zip(axes, columns, strict=True):
        stats = curve_stats(epochs.dropna(subset=[column]), column)
        tables.append(stats)
        for arm in study.arms:
            _band(ax, stats, arm, colors[arm], _label(study, arm))
        ax.set(title=f"effective ratio, layer {column.removeprefix('effective_ratio/')}", xlabel="epoch",
               ylim=(0, 1.05))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    caption = ("Condensation of the layer's neurons (train.track_condensation): the fewest of their own "
               "directions that every neuron has cosine similarity > 0.95 with, over the number of neurons "
               "(greedy cover, docs/theory.md); lower is more condensed. Mean ± std over seeds.")
    return FigureData("effective_ratio", "Effective ratio per epoch", caption, fig,
                      pd.concat(tables, ignore_index=True))


def all_figures(study: Study) -> list[FigureData]:
    """Every figure that the study's metrics allow (accuracy figures only for classification)."""
    has_acc = "final_test_acc" in study.runs and study.runs["final_test_acc"].notna().any()
    figures = [curves_figure(study), final_figure(study, "final_test_acc" if has_acc else "final_test_loss")]
    epochs = _finished_epochs(study)
    if any(column in epochs and epochs[column].notna().any() for column in ("train_eval_acc", "train_eval_loss")):
        figures.append(gap_figure(study))  # runs with train.eval_train_samples = 0 have no gap
    if "weight_norm" in epochs and epochs["weight_norm"].notna().any():  # runs stored before 2026-11-29 lack it
        figures.append(norms_figure(study))
    figures.append(stability_figure(study))
    if any(c.startswith("effective_ratio/") for c in epochs.columns):
        figures.append(effective_ratio_figure(study))
    from reglab.report import comparison_figures as cf

    primary = "final_test_acc" if has_acc else "final_test_loss"
    figures += [cf.robust_figure(study, primary), cf.profile_figure(study, primary)]
    if study.spec.statistics.target:
        figures.append(cf.target_figure(study))
    if cf.median_runs(study):
        figures += [cf.confusion_figure(study), cf.class_f1_figure(study)]
    return figures
