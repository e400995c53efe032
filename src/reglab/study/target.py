"""Time to target: the first epoch (and wall-clock seconds) at which a run's epoch metric reaches a target.

A metric whose name ends in ``loss`` reaches the target when it is ≤ the target, any other metric
(accuracies) when it is ≥. A finished run that never reaches it is *censored* at its last epoch — it
is kept, not dropped: per arm the report gives "k/n reached" and the Kaplan–Meier median
(`scipy.stats.ecdf` on right-censored data), the first t at which the estimated fraction of runs
still short of the target falls to ½ or below; when more than half never reach it the median is
"not reached" (> the longest run).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from reglab.config import ConfigError, parse_value


def parse_target(text: str) -> dict[str, float]:
    """``"test_acc=0.9"`` -> ``{"test_acc": 0.9}``."""
    name, sep, value = (part.strip() for part in text.partition("="))
    number = parse_value(value) if value else None
    if not sep or not name or isinstance(number, bool) or not isinstance(number, int | float):
        raise ConfigError(f"--target {text!r}: expected METRIC=VALUE, e.g. test_acc=0.9")
    return {name: float(number)}


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def run_times(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str, target: float) -> pd.DataFrame:
    """Per finished run (done or diverged): reached, epoch and seconds (first reaching the target, else
    the last epoch and the total seconds, censored)."""
    finished = runs[runs["status"].isin(["done", "diverged"])]
    if metric not in epochs:
        raise ConfigError(f"target: {metric!r} is not an epoch metric of this study "
                         f"(e.g. {', '.join(c for c in epochs.columns if c.endswith(('acc', 'loss')))})")
    rows = []
    for _, run in finished.iterrows():
        curve = epochs[epochs["run_id"] == run["run_id"]].sort_values("epoch")
        if curve.empty:
            continue
        values = curve[metric].to_numpy(float)
        hit = values <= target if lower_is_better(metric) else values >= target
        seconds = curve["seconds"].to_numpy(float).cumsum() if "seconds" in curve else np.full(len(curve), np.nan)
        i = int(np.argmax(hit)) if hit.any() else len(curve) - 1
        rows.append({"run_id": run["run_id"], "arm": run["arm"], "seed": run["seed"], "reached": bool(hit.any()),
                     "epoch": int(curve["epoch"].iloc[i]), "seconds": float(seconds[i])})
    return pd.DataFrame(rows, columns=["run_id", "arm", "seed", "reached", "epoch", "seconds"])


def km_median(times: np.ndarray, reached: np.ndarray) -> float:
    """Kaplan–Meier median time to target; inf when the estimated survival never falls to ½."""
    times, reached = np.asarray(times, dtype=float), np.asarray(reached, dtype=bool)
    if not len(times):
        return math.nan
    if not reached.any():
        return math.inf
    data = stats.CensoredData(uncensored=times[reached], right=times[~reached])
    sf = stats.ecdf(data).sf
    below = sf.quantiles[sf.probabilities <= 0.5 + 1e-12]  # S = ½ exactly may round to 0.5000000000000001
    return float(below[0]) if len(below) else math.inf


def time_to_target(runs: pd.DataFrame, epochs: pd.DataFrame, arms: list[str], metric: str,
                   target: float) -> pd.DataFrame:
    """Per arm: runs reached / finished, KM median epoch and seconds, and the epochs of those that reached."""
    times = run_times(runs, epochs, metric, target)
    rows = []
    for arm in arms:
        t = times[times["arm"] == arm]
        reached = t["reached"].to_numpy(bool)
        rows.append({"arm": arm, "metric": metric, "target": target, "reached": int(reached.sum()), "n": len(t),
                     "median_epoch": km_median(t["epoch"].to_numpy(float), reached),
                     "median_seconds": km_median(t["seconds"].to_numpy(float), reached),
                     "epochs_reached": sorted(t.loc[t["reached"], "epoch"].astype(int).tolist()),
                     "longest_epoch": int(t["epoch"].max()) if len(t) else 0})
    return pd.DataFrame(rows)
