"""Figures of the few-run comparison (docs/studies.md): IQM and probability of improvement with their
intervals, performance profiles, time to target, and the per-class view (confusion matrix of each
arm's median run, per-class F1 by arm). Each comes with the numbers behind it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reglab.report.figures import FigureData, _colors, _label
from reglab.study.classes import class_metrics
from reglab.study.results import Study
from reglab.study.robust import performance_profile
from reglab.study.stats import METRIC_BY_COLUMN
from reglab.study.target import fraction_reached, lower_is_better, run_times


def _done(study: Study, column: str) -> pd.DataFrame:
    runs = study.runs
    return runs[(runs["status"] == "done") & runs[column].notna()] if column in runs else runs.iloc[:0]


def robust_figure(study: Study, column: str) -> FigureData:
    """IQM per arm with its stratified bootstrap interval; P(arm beats baseline) with its interval."""
    table, colors = study.robust(column), _colors(study.arms)
    fig = Figure(figsize=(11, max(2.6, 0.45 * len(study.arms) + 1.4)), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(study.arms))[::-1]
    for yi, (_, r) in zip(y, table.iterrows(), strict=True):
        color = colors[r["arm"]]
        ax1.errorbar(r["iqm"], yi, xerr=[[r["iqm"] - r["iqm_low"]], [r["iqm_high"] - r["iqm"]]]
                     if math.isfinite(r["iqm_low"]) else None, fmt="o", color=color, capsize=4)
        if math.isfinite(r["poi"]):
            ax2.errorbar(r["poi"], yi, xerr=[[r["poi"] - r["poi_low"]], [r["poi_high"] - r["poi"]]]
                         if math.isfinite(r["poi_low"]) else None, fmt="o", color=color, capsize=4)
    ax1.set_yticks(y, [_label(study, a) for a in study.arms])
    ax1.set(title=f"IQM of {column.replace('_', ' ')} (95% stratified bootstrap CI)")
    ax2.axvline(0.5, color="gray", lw=0.8, ls="--")
    ax2.set(title=f"P(run beats a {study.baseline} run)", xlim=(-0.02, 1.02))
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    caption = ("Left: interquartile mean over finished runs (mean of the middle 50%), interval from a "
               "stratified bootstrap. Right: probability that a random run of the arm beats a random run "
               "of the baseline (0.5 = no tendency), stratified bootstrap interval.")
    return FigureData("robust", "IQM and probability of improvement", caption, fig, table)


def profile_figure(study: Study, column: str) -> FigureData:
    """Fraction of each arm's runs scoring above τ, for τ over the observed range."""
    done, colors = _done(study, column), _colors(study.arms)
    values = done[column].to_numpy(float)
    low, high = (values.min(), values.max()) if len(values) else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    taus = np.linspace(low - pad, high + pad, 200)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    tables = []
    for arm in study.arms:
        fraction = performance_profile(done.loc[done["arm"] == arm, column], taus)
        tables.append(pd.DataFrame({"arm": arm, "tau": taus, "fraction_above": fraction}))
        ax.step(taus, fraction, where="post", color=colors[arm], label=_label(study, arm), lw=1.6)
    better = "higher" if METRIC_BY_COLUMN.get(column) is None or METRIC_BY_COLUMN[column].higher_is_better \
        else "lower"
    ax.set(xlabel=f"τ ({column.replace('_', ' ')})", ylabel="fraction of runs > τ", ylim=(-0.02, 1.02),
           title="performance profile")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    caption = (f"Fraction of each arm's finished runs whose {column.replace('_', ' ')} exceeds τ; a curve "
               f"lying {'above' if better == 'higher' else 'below'} another is better for every threshold.")
    return FigureData("profile", "Performance profile", caption, fig, pd.concat(tables, ignore_index=True))


def target_figure(study: Study) -> FigureData:
    """Fraction of each arm's finished runs that reached the target by epoch t (`fraction_reached`)."""
    (metric, target), = study.spec.statistics.target.items()
    times, colors = run_times(study.runs, study.epochs, metric, target), _colors(study.arms)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    tables = []
    for arm in study.arms:
        t = times[times["arm"] == arm]
        if t.empty:
            continue
        reached, epochs = t["reached"].to_numpy(bool), t["epoch"].to_numpy(float)
        x, y = fraction_reached(epochs, reached)
        x, y = np.r_[x, epochs.max()], np.r_[y, y[-1]]  # held to the arm's longest run
        tables.append(pd.DataFrame({"arm": arm, "epoch": x, "fraction_reached": y}))
        ax.step(x, y, where="post", color=colors[arm], lw=1.6,
                label=f"{_label(study, arm)} ({int(reached.sum())}/{len(t)} reached)")
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.set(xlabel="epoch", ylabel="fraction of finished runs reached", ylim=(-0.02, 1.02),
           title=f"time to {metric} {'≤' if lower_is_better(metric) else '≥'} {target:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    caption = ("Fraction of each arm's finished runs that have reached the target by each epoch; runs that "
               "never reach it (diverged ones included) stay in the denominator. The median epoch is where "
               "a curve crosses ½ (dotted).")
    return FigureData("target", "Time to target", caption, fig, pd.concat(tables, ignore_index=True)
                      if tables else pd.DataFrame(columns=["arm", "epoch", "fraction_reached"]))


def _with_confusion(runs: pd.DataFrame) -> pd.DataFrame:
    if "confusion" not in runs:
        return runs.iloc[:0]
    return runs.loc[runs["confusion"].map(bool).astype(bool)]


def median_runs(study: Study, column: str = "final_test_acc") -> dict[str, pd.Series]:
    """Per arm, its median run by `column` among finished runs with a confusion matrix (lower middle)."""
    runs = _done(study, column)
    runs = _with_confusion(runs)
    chosen = {}
    for arm in study.arms:
        of_arm = runs[runs["arm"] == arm].sort_values(column)
        if len(of_arm):
            chosen[arm] = of_arm.iloc[(len(of_arm) - 1) // 2]
    return chosen


def confusion_figure(study: Study) -> FigureData:
    """Row-normalised test confusion matrix of each arm's median run."""
    chosen = median_runs(study)
    cols = min(4, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig = Figure(figsize=(3.4 * cols + 0.8, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    tables = []
    image = None
    for ax, (arm, run) in zip(axes, chosen.items(), strict=False):
        cm = np.asarray(run["confusion"], dtype=float)
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        ax.set(title=f"{_label(study, arm)}\nseed {run['seed']}", xlabel="predicted", ylabel="true")
        k = len(cm)
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        i, j = np.indices(cm.shape)
        tables.append(pd.DataFrame({"arm": arm, "run_id": run["run_id"], "true": i.ravel(),
                                    "predicted": j.ravel(), "count": cm.ravel().astype(int)}))
    for ax in axes[len(chosen):]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes.tolist(), shrink=0.8, label="share of the true class")
    caption = ("Test-set confusion matrix of each arm's median run by final test accuracy, each row divided "
               "by the number of test examples of that class (the diagonal is the per-class recall).")
    return FigureData("confusion", "Confusion matrices (median run per arm)", caption, fig,
                      pd.concat(tables, ignore_index=True))


def class_f1_table(study: Study) -> pd.DataFrame:
    """Per arm and class: mean and std over finished runs of the test F1, and n."""
    runs = _with_confusion(study.runs[study.runs["status"] == "done"])
    rows = []
    for arm in study.arms:
        f1 = [class_metrics(c).f1 for c in runs.loc[runs["arm"] == arm, "confusion"]]
        if not f1:
            continue
        stacked = np.vstack(f1)
        for k in range(stacked.shape[1]):
            rows.append({"arm": arm, "class": k, "n": len(stacked), "f1_mean": float(stacked[:, k].mean()),
                         "f1_std": float(stacked[:, k].std(ddof=1)) if len(stacked) > 1 else math.nan})
    return pd.DataFrame(rows, columns=["arm", "class", "n", "f1_mean", "f1_std"])


def class_f1_figure(study: Study) -> FigureData:
    """Grouped bars: per-class test F1 of each arm, mean ± std over seeds."""
    table, colors = class_f1_table(study), _colors(study.arms)
    arms = [a for a in study.arms if a in set(table["arm"])]
    classes = sorted(set(table["class"]))
    fig = Figure(figsize=(min(14, max(7, 0.25 * len(classes) * max(1, len(arms)) + 3)), 4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        t = table[table["arm"] == arm].sort_values("class")
        ax.bar(t["class"] + (i - (len(arms) - 1) / 2) * width, t["f1_mean"], width,
               yerr=np.nan_to_num(t["f1_std"].to_numpy(float)), color=colors[arm], label=_label(study, arm),
               capsize=2, error_kw={"lw": 0.8})
    ax.set_xticks(classes)
    ax.set(xlabel="class", ylabel="test F1", ylim=(0, 1.05), title="per-class F1 (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(4, len(arms)))
    return FigureData("class_f1", "Per-class F1 by arm", "Test F1 of each class, 2·P·R/(P+R), mean ± std over "
                      "each arm's finished runs.", fig, table)
