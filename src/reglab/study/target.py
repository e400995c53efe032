"""Time to target: the first epoch (and wall-clock seconds) at which a run's epoch metric reaches a target.

A metric whose name ends in ``loss`` reaches the target when it is ≤ the target, any other metric
(accuracies) when it is ≥. A finished run (done, early-stopped or diverged) that never reaches it is
kept as *not reached*, not dropped and not censored: its training is over, so it never will, and
censoring it at its last epoch would take it out of the runs still short of the target and make
the arm look faster (a run that diverged at epoch 1, or one that trained a little faster in wall
time, would leave the denominator). Per arm the report gives "k/n reached" and the median time:
the first t by which at least half of the arm's finished runs have reached the target; "not
reached" when fewer than half ever do.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reglab.config import ConfigError, parse_value


def parse_target(text: str) -> dict[str, float]:
    """``"test_acc=0.9"`` -> ``{"test_acc": 0.9}``."""
    name, sep, value = (part.strip() for part in text.partition("="))
    number = parse_value(value) if value else None
    if not sep or not name or isinstance(number, bool) or not isinstance(number, int | float):
        raise ConfigError(f"--target {text!r}: expected METRIC=VALUE, e.g. test_acc=0.9")
    try:
        target = float(number)
    except OverflowError:  # an integer beyond float's range
        target = math.inf
    if not math.isfinite(target):
        raise ConfigError(f"--target {text!r}: the target must be a finite number")
    return {name: target}


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of an epoch metric are better: the losses (`test_loss`, `val_loss`, …)."""
    return metric.endswith("loss")


def run_times(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str, target: float) -> pd.DataFrame:
    """Per finished run (done or diverged): reached, epoch and seconds (first reaching the target, else
    the last epoch and the total seconds)."""
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


def median_time(times: np.ndarray, reached: np.ndarray) -> float:
    """First time by which at least half of the runs reached the target (runs not `reached` never do);
    inf when fewer than half ever do, NaN without runs."""
    times, reached = np.asarray(times, dtype=float), np.asarray(reached, dtype=bool)
    half = -(-len(times) // 2)  # ⌈n/2⌉ runs
    if not len(times):
        return math.nan
    if reached.sum() < half:
        return math.inf
    return float(np.sort(times[reached])[half - 1])


def fraction_reached(times: np.ndarray, reached: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The step function t -> share of the runs that reached the target by t: its jump times (from 0)
    and the share from each on."""
    hits = np.sort(np.asarray(times, dtype=float)[np.asarray(reached, dtype=bool)])
    steps, first = np.unique(hits, return_index=True)
    counts = np.r_[first[1:], len(hits)] if len(hits) else np.array([], dtype=int)
    return np.r_[0.0, steps], np.r_[0.0, counts / max(len(times), 1)]


def time_to_target(runs: pd.DataFrame, epochs: pd.DataFrame, arms: list[str], metric: str,
                   target: float) -> pd.DataFrame:
    """Per arm: runs reached / finished, median epoch and seconds (`median_time`), and the epochs of those
    that reached."""
    times = run_times(runs, epochs, metric, target)
    rows = []
    for arm in arms:
        t = times[times["arm"] == arm]
        reached = t["reached"].to_numpy(bool)
        rows.append({"arm": arm, "metric": metric, "target": target, "reached": int(reached.sum()), "n": len(t),
                     "median_epoch": median_time(t["epoch"].to_numpy(float), reached),
                     "median_seconds": median_time(t["seconds"].to_numpy(float), reached),
                     "epochs_reached": sorted(t.loc[t["reached"], "epoch"].astype(int).tolist()),
                     "longest_epoch": int(t["epoch"].max()) if len(t) else 0})
    return pd.DataFrame(rows)
