"""The search part of a `reglab tune` / `reglab sweep` report: every trial with its interval over seeds,
the best configuration, and three figures (trials, parallel coordinates, parameter importance)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reglab.report import format as fmt
from reglab.report.figures import FigureData
from reglab.report.tables import Rows
from reglab.study.store import StudyStore
from reglab.study.target import lower_is_better


def is_tune_study(path: Path) -> bool:
    with StudyStore(path, create=False) as store:
        return store.meta("tune") is not None


def trial_rows(trials: pd.DataFrame) -> Rows:
    metric = trials["metric"].iloc[0] if len(trials) else ""
    params = [c for c in trials.columns if c.startswith("param:")]
    return [{
        "trial": str(r["trial"]), "state": r["state"], **{c.removeprefix("param:"): str(r[c]) for c in params},
        f"objective ({r['objective']} {metric})": fmt.value(metric, r["value"]),
        "mean ± std": fmt.mean_std(metric, r["mean"], r["std"], r["n"]),
        "95% CI (t)": fmt.interval(metric, r["ci_low"], r["ci_high"]),
        "IQM [95% bootstrap CI]": f"{fmt.value(metric, r['iqm'])} {fmt.interval(metric, r['iqm_low'], r['iqm_high'])}",
        "note": r["error"] or "",
    } for _, r in trials.iterrows()]


def best_rows(best: dict | None) -> Rows:
    if best is None:
        return [{"best trial": "none", "configuration": "no trial completed (see each trial's note)"}]
    metric = best["metric"]
    return [{"best trial": str(best["trial"]), "configuration": best["arm"],
             f"objective ({best['objective']} {metric})": fmt.value(metric, best["value"]),
             "mean ± std": fmt.mean_std(metric, best["mean"], best["std"], best["n"]),
             "95% CI (t)": fmt.interval(metric, best["ci_low"], best["ci_high"])}]


def trials_figure(trials: pd.DataFrame) -> FigureData:
    """Each trial's mean over seeds with its Student-t 95% interval, in trial order."""
    fig = Figure(figsize=(max(6, 0.35 * len(trials) + 3), 4), layout="constrained")
    ax = fig.subplots()
    colors = {"complete": "tab:blue", "pruned": "tab:gray", "fail": "tab:red"}
    for state, group in trials.groupby("state"):
        half = np.vstack([group["mean"] - group["ci_low"], group["ci_high"] - group["mean"]])
        ax.errorbar(group["trial"], group["mean"], yerr=np.nan_to_num(half), fmt="o", capsize=3,
                    color=colors.get(state, "black"), label=f"{state} ({len(group)})")
    metric = trials["metric"].iloc[0]
    ax.set(xlabel="trial", ylabel=f"final {metric}", title=f"each trial: mean {metric} over its seeds (95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return FigureData("trials", "Trials", "Mean over each trial's finished seeds with its Student-t 95% "
                      "interval; a pruned trial shows the seeds it ran.", fig, trials)


def parallel_figure(trials: pd.DataFrame) -> FigureData:
    """Parallel coordinates: one line per complete trial (at least one) across the (min–max scaled)
    parameters and the objective, coloured by the objective."""
    from matplotlib import colormaps

    done = trials[trials["state"] == "complete"].dropna(subset=["value"])
    params = [c for c in trials.columns if c.startswith("param:")]
    columns = [*params, "value"]
    fig = Figure(figsize=(max(6, 2.2 * len(columns)), 4.2), layout="constrained")
    ax = fig.subplots()
    scaled, ticks = {}, {}
    for c in columns:
        raw = done[c]
        numeric = pd.to_numeric(raw, errors="coerce")
        if numeric.notna().all():
            log = c != "value" and (numeric > 0).all() and numeric.max() / numeric.min() >= 100
            x = np.log10(numeric) if log else numeric
            lo, hi = float(x.min()), float(x.max())
            scaled[c] = (x - lo) / (hi - lo) if hi > lo else x * 0 + 0.5
            ticks[c] = f"{numeric.min():.3g} … {numeric.max():.3g}" + (" (log)" if log else "")
        else:
            codes = {v: i for i, v in enumerate(sorted(set(raw.astype(str))))}
            scaled[c] = raw.astype(str).map(codes) / max(1, len(codes) - 1)
            ticks[c] = " / ".join(codes)
    values = done["value"].to_numpy(float)
    span = values.min(), values.max()
    cmap = colormaps["viridis"]
    for i in range(len(done)):
        shade = (values[i] - span[0]) / (span[1] - span[0]) if span[1] > span[0] else 0.5
        ax.plot(range(len(columns)), [scaled[c].iloc[i] for c in columns], color=cmap(shade), alpha=0.8, lw=1.4)
    ax.set_xticks(range(len(columns)), [f"{c.removeprefix('param:')}\n{ticks.get(c, '')}" for c in columns],
                  fontsize=8)
    ax.set(yticks=[0, 1], yticklabels=["min", "max"], title="parallel coordinates (complete trials)")
    ax.grid(axis="x", alpha=0.5)
    numbers = done[["trial", *columns]].reset_index(drop=True)
    return FigureData("parallel", "Parallel coordinates", "One line per complete trial through its "
                      "parameters and objective (each axis scaled from its min to its max; colour: objective).",
                      fig, numbers)


def importance_figure(path: Path) -> FigureData | None:
    """PED-ANOVA parameter importances (Watanabe et al. 2023; optuna's default evaluator): how much each
    parameter's distribution in the best 10 % of complete trials departs from the whole. None where
    optuna cannot tell the parameters apart (too few trials: it would call them all equal)."""
    import optuna

    from reglab.study.tune import open_study

    study = open_study(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            importances = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        except (ValueError, RuntimeError):
            return None
    if any("importances will be equal" in str(w.message) for w in caught):
        return None
    if not importances or not all(math.isfinite(v) for v in importances.values()):
        return None
    names, values = list(importances)[::-1], list(importances.values())[::-1]
    fig = Figure(figsize=(6.5, max(2.2, 0.5 * len(names) + 1.2)), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, values, color="tab:blue")
    ax.set(xlabel="importance (normalised to sum 1)", title="parameter importance (PED-ANOVA)")
    ax.grid(axis="x", alpha=0.3)
    return FigureData("importance", "Parameter importance", "Optuna's PED-ANOVA importance: how far each "
                      "parameter's distribution in the best 10% of complete trials departs from its distribution "
                      "over all of them, normalised to sum 1.", fig,
                      pd.DataFrame({"param": names[::-1], "importance": values[::-1]}))


def tune_report(path: Path) -> tuple[Rows, Rows, list[FigureData]] | None:
    """(trial rows, best-configuration rows, figures) of a tune directory, or None for a plain study."""
    from reglab.study.tune import best_trial, trials_table

    if not is_tune_study(path):
        return None
    trials = trials_table(path)
    if not len(trials):
        return [], best_rows(None), []
    direction = "minimize" if lower_is_better(trials["metric"].iloc[0]) else "maximize"
    best = best_trial(trials, direction)
    figures = [trials_figure(trials)]
    if best is not None:  # the other figures need a complete trial
        figures += [f for f in (parallel_figure(trials), importance_figure(path)) if f is not None]
    return trial_rows(trials), best_rows(best), figures
