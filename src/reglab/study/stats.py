"""Statistics over seeds: mean ± std with n, Student-t intervals, Welch's t-test and a bootstrap
interval of the difference to the baseline, and a plain verdict.

Only runs that finished (status "done") enter the numbers; diverged runs are counted and reported
beside them. With n seeds per arm, the verdict at α = 0.05 is "better" / "worse" when Welch's test
rejects equal means, otherwise "not distinguishable at n=<n> seeds"; below 2 seeds per arm there is
no test ("needs ≥ 2 seeds").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Metric:
    column: str  # a column of `Study.runs`
    label: str
    higher_is_better: bool | None  # None: no direction is better (verdict "higher" / "lower")


METRICS = (
    Metric("final_test_acc", "final test acc", True),
    Metric("best_test_acc", "best test acc", True),
    Metric("final_test_loss", "final test loss", False),
    # measured in training mode, with the arm's dropout / noise active: higher by construction for a
    # noisier arm, so neither direction is "better"
    Metric("final_train_loss", "final train loss (training mode)", None),
    Metric("gap_acc", "gap acc (train − test)", False),
    Metric("gap_loss", "gap loss (test − train)", False),
    Metric("fluctuation", "fluctuation |Δ test loss|", False),
)
ANALYSIS_METRICS = (
    Metric("hessian_top", "Hessian λ_max", False),
    Metric("hessian_trace", "Hessian trace", False),
    Metric("landscape_rise", "loss rise at ±radius (1-D)", False),
    Metric("effective_ratio", "effective ratio (greedy)", False),
)
"""End-of-training analyses (reglab.study.analysis); lower is flatter / more condensed, so "better" is lower."""
METRIC_BY_COLUMN = {m.column: m for m in (*METRICS, *ANALYSIS_METRICS)}


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # ddof = 1
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    diff: float  # mean(arm) − mean(baseline)
    diff_low: float  # bootstrap percentile interval of the difference
    diff_high: float
    t: float
    p_value: float  # Welch's t-test, two-sided
    verdict: str


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def describe(values: Sequence[float], *, confidence: float = 0.95) -> Summary:
    """Mean, sample std and the Student-t interval of the mean (NaN where n is too small)."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def bootstrap_diff(a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000,
                   confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) − mean(b), resampling each group independently."""
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    diffs = a[rng.integers(0, len(a), (resamples, len(a)))].mean(1) \
        - b[rng.integers(0, len(b), (resamples, len(b)))].mean(1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(low), float(high)


def verdict(p_value: float, diff: float, n_arm: int, n_base: int, *, higher_is_better: bool | None = True,
            alpha: float = ALPHA) -> str:
    """"better" / "worse" when p < α, else "not distinguishable at n=… seeds"; needs 2 seeds per arm."""
    if n_arm < 2 or n_base < 2:
        return "needs ≥ 2 seeds"
    if math.isfinite(p_value) and p_value < alpha and diff != 0:
        if higher_is_better is None:
            return "higher" if diff > 0 else "lower"
        return "better" if (diff > 0) == higher_is_better else "worse"
    n = f"{n_arm}" if n_arm == n_base else f"{n_arm} vs {n_base}"
    return f"not distinguishable at n={n} seeds"


def compare(arm: Sequence[float], baseline: Sequence[float], *, higher_is_better: bool | None = True,
            alpha: float = ALPHA, resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Difference of means to the baseline with Welch's t-test and a bootstrap interval."""
    a, b = _finite(arm), _finite(baseline)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    t = p = math.nan
    if len(a) >= 2 and len(b) >= 2:
        with warnings.catch_warnings():  # nearly identical samples: scipy warns, the result stands
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_ind(a, b, equal_var=False)
        t, p = float(result.statistic), float(result.pvalue)
    low, high = bootstrap_diff(a, b, resamples=resamples, seed=seed)
    return Comparison(diff, low, high, t, p, verdict(p, diff, len(a), len(b),
                                                      higher_is_better=higher_is_better, alpha=alpha))


def summarize(runs: pd.DataFrame, arms: Sequence[str], baseline: str, *,
              metrics: Sequence[Metric] = METRICS, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (arm, metric): n, diverged, mean, std, 95% CI, and the comparison to the baseline.

    `runs` needs columns ``arm``, ``status`` and the metric columns; only "done" runs count.
    """
    rows = []
    done = runs[runs["status"] == "done"]
    for metric in metrics:
        if metric.column not in runs or done[metric.column].isna().all():
            continue
        base_values = done.loc[done["arm"] == baseline, metric.column]
        for arm in arms:
            of_arm = runs[runs["arm"] == arm]
            values = done.loc[done["arm"] == arm, metric.column]
            row = {"arm": arm, "metric": metric.column, "label": metric.label,
                   "higher_is_better": metric.higher_is_better, "runs": len(of_arm),
                   "diverged": int((of_arm["status"] == "diverged").sum()),
                   "unfinished": int((~of_arm["status"].isin(["done", "diverged"])).sum()),
                   **asdict(describe(values))}
            if arm == baseline:
                row.update(diff=0.0, diff_low=math.nan, diff_high=math.nan, t=math.nan, p_value=math.nan,
                           verdict="baseline")
            else:
                row.update(asdict(compare(values, base_values, higher_is_better=metric.higher_is_better,
                                          alpha=alpha)))
            rows.append(row)
    return pd.DataFrame(rows)
