"""How stable training was (definitions in docs/studies.md).

* epoch-to-epoch fluctuation of a run with test losses L_1..L_T: the mean of |L_t − L_{t−1}| over the
  epochs of the last half, t > ⌊T/2⌋ and t ≥ 2 (NaN when T < 2);
* seed-to-seed spread of an arm: the mean over epochs t of the sample std (ddof = 1) across seeds of
  the test accuracy a_{s,t}, over epochs reached by at least two of its finished runs;
* divergence: the number of an arm's runs that diverged (non-finite loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd


def fluctuation(curve: Sequence[float]) -> float:
    """Mean |Δ| between consecutive epochs over the last half of training."""
    x = np.asarray(curve, dtype=float)
    if len(x) < 2:
        return math.nan
    diffs = np.abs(np.diff(x))  # diffs[i] belongs to epoch t = i + 2
    return float(diffs[max(len(x) // 2 - 1, 0):].mean())


def seed_spread(epochs: pd.DataFrame, column: str = "test_acc") -> float:
    """Mean over epochs of the across-seed std of `column`; `epochs` has columns seed, epoch, column."""
    if column not in epochs or epochs.empty:
        return math.nan
    by_epoch = epochs.pivot_table(index="epoch", columns="seed", values=column, aggfunc="first")
    std = by_epoch.std(axis=1, ddof=1)[by_epoch.count(axis=1) >= 2]
    return float(std.mean()) if len(std) else math.nan


def stability_table(runs: pd.DataFrame, epochs: pd.DataFrame, arms: Sequence[str]) -> pd.DataFrame:
    """Per arm: runs, diverged, fluctuation mean/std over finished runs, seed spread of test acc/loss."""
    rows = []
    done_ids = set(runs.loc[runs["status"] == "done", "run_id"])
    for arm in arms:
        of_arm = runs[runs["arm"] == arm]
        done = of_arm[of_arm["status"] == "done"]
        curves = epochs[(epochs["arm"] == arm) & epochs["run_id"].isin(done_ids)] if len(epochs) else epochs
        fl = done["fluctuation"].dropna() if "fluctuation" in done else pd.Series(dtype=float)
        rows.append({
            "arm": arm, "runs": len(of_arm), "n": len(done),
            "diverged": int((of_arm["status"] == "diverged").sum()),
            "fluctuation_mean": float(fl.mean()) if len(fl) else math.nan,
            "fluctuation_std": float(fl.std(ddof=1)) if len(fl) >= 2 else math.nan,
            "spread_test_acc": seed_spread(curves, "test_acc"),
            "spread_test_loss": seed_spread(curves, "test_loss"),
        })
    return pd.DataFrame(rows)
