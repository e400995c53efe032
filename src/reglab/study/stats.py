"""Statistics over seeds: mean ± std with n, Student-t intervals, paired or Welch comparisons with the
baseline, a correction for comparing many arms, and a plain verdict.

Only runs that finished (status "done") enter the numbers; diverged runs are counted and reported
beside them.

* **Paired** (the arm and the baseline finished on exactly the same seeds, n ≥ 2): the unit is the
  per-seed difference d_s = x_s − b_s (same initialisation and data order). Paired t-test
  (`scipy.stats.ttest_rel`), Wilcoxon signed-rank test (`scipy.stats.wilcoxon`, reported beside it)
  and a bootstrap interval that resamples seeds, i.e. the d_s.
* **Welch** otherwise: Welch's unequal-variance t-test and a bootstrap interval that resamples each
  group on its own.
* **Many arms**: the t-test p-values of the arms against the baseline (one family per metric) are
  adjusted by Holm's step-down method (default; controls the family-wise error rate) or by
  Benjamini–Hochberg (controls the false discovery rate).

The verdict at α = 0.05 is "better" / "worse" when the *adjusted* p is below α, otherwise
"not distinguishable at n=<n> seeds"; each verdict names the adjusted p it rests on. Below 2 seeds per
arm there is no test ("needs ≥ 2 seeds").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from reglab.study.power import SeedNoise
from reglab.study.robust import finite, stratified_bootstrap

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10_000
CORRECTIONS: tuple[str, ...] = ("holm", "bh")
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini–Hochberg", "none": "none"}


@dataclass(frozen=True)
class Metric:
    column: str  # a column of `Study.runs`
    label: str
    higher_is_better: bool | None  # None: no direction is better (verdict "higher" / "lower")


METRICS = (
    Metric("final_test_acc", "final test acc", True),
    Metric("best_test_acc", "best test acc (max over epochs: optimistic)", True),  # epochs chosen on test
    Metric("final_test_loss", "final test loss", False),
    # measured in training mode, with the arm's dropout / noise active: higher by construction for a
    # noisier arm, so neither direction is "better"
    Metric("final_train_loss", "final train loss (training mode)", None),
    Metric("gap_acc", "gap acc (train − test)", False),
    Metric("gap_loss", "gap loss (test − train)", False),
    Metric("fluctuation", "fluctuation |Δ test loss|", False),
    Metric("macro_f1", "macro F1 (test)", True),
    Metric("final_weight_norm", "final weight norm ‖w‖₂", None),  # a diagnostic: smaller is not better
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
    diff_low: float  # bootstrap percentile interval of the difference (paired: of the mean d_s)
    diff_high: float
    test: str  # "paired t", "Welch t" or "—"
    t: float
    p_value: float  # the t-test's two-sided p, unadjusted
    p_wilcoxon: float  # Wilcoxon signed-rank (paired only), unadjusted
    n_pairs: int  # seeds in common when paired, else 0


def describe(values: Sequence[float], *, confidence: float = 0.95) -> Summary:
    """Mean, sample std and the Student-t interval of the mean (NaN where n is too small)."""
    x = finite(values)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return a.mean(axis) - b.mean(axis)


def adjust_p(p_values: Sequence[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values for a family of tests; NaN entries stay NaN and are not counted.

    holm: Holm (1979) step-down, p_(i) ↦ max_{j ≤ i} min(1, (m − j + 1) p_(j)).
    bh:   Benjamini & Hochberg (1995) via `scipy.stats.false_discovery_control`.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, math.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    if method == "bh":
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    elif method == "holm":
        order = np.argsort(p[ok])
        scaled = np.minimum(1.0, (m - np.arange(m)) * p[ok][order])
        adjusted = np.empty(m)
        adjusted[order] = np.maximum.accumulate(scaled)
        out[ok] = adjusted
    else:
        raise ValueError(f"correction: unknown {method!r} (choose from {', '.join(CORRECTIONS)})")
    return out


def _quiet(test, *args, **kwargs) -> tuple[float, float]:
    """(statistic, p) of a scipy test; NaN where the test is undefined (e.g. all differences zero)."""
    with warnings.catch_warnings():  # nearly identical samples: scipy warns, the result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            result = test(*args, **kwargs)
        except ValueError:
            return math.nan, math.nan
    return float(result.statistic), float(result.pvalue)


def paired_values(arm: pd.Series, baseline: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """(arm, baseline) values aligned by seed when both have finite values on exactly the same seeds."""
    a, b = arm[np.isfinite(arm.astype(float))], baseline[np.isfinite(baseline.astype(float))]
    if len(a) < 2 or a.index.has_duplicates or b.index.has_duplicates or set(a.index) != set(b.index):
        return None
    order = sorted(a.index)
    return a.loc[order].to_numpy(float), b.loc[order].to_numpy(float)


def compare(arm: Sequence[float] | pd.Series, baseline: Sequence[float] | pd.Series) -> Comparison:
    """Difference of means to the baseline, its percentile bootstrap interval (10,000 resamples,
    `stratified_bootstrap`) and an (unadjusted) t-test.

    `pd.Series` indexed by seed are paired when both cover the same seeds (`paired_values`); otherwise,
    and for plain sequences, Welch.
    """
    pairs = None
    if isinstance(arm, pd.Series) and isinstance(baseline, pd.Series):
        pairs = paired_values(arm, baseline)
    if pairs is not None:
        a, b = pairs
        d = a - b
        identical = not np.any(d != 0)  # no evidence of a difference (scipy: NaN, which the family would drop)
        t, p = (0.0, 1.0) if identical else _quiet(stats.ttest_rel, a, b)
        _, p_w = (math.nan, 1.0) if identical else _quiet(stats.wilcoxon, d)
        low, high = stratified_bootstrap([d], np.mean, resamples=BOOTSTRAP_RESAMPLES)
        return Comparison(float(d.mean()), low, high, "paired t", t, p, p_w, len(d))
    a, b = finite(np.asarray(arm, dtype=float)), finite(np.asarray(baseline, dtype=float))
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    t = p = math.nan
    test = "—"
    if len(a) >= 2 and len(b) >= 2:
        identical = np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]  # one value in both: p = 1, not NaN
        t, p = (0.0, 1.0) if identical else _quiet(stats.ttest_ind, a, b, equal_var=False)
        test = "Welch t"
    low, high = stratified_bootstrap([a, b], _mean_difference, resamples=BOOTSTRAP_RESAMPLES)
    return Comparison(diff, low, high, test, t, p, math.nan, 0)


def seed_noise(arm: pd.Series, baseline: pd.Series) -> SeedNoise | None:
    """The noise the comparison of `compare` works against: the std of the per-seed differences when
    paired, else each arm's std (None below 2 finite values in either arm)."""
    pairs = paired_values(arm, baseline)
    if pairs is not None:
        return SeedNoise((float(np.std(pairs[0] - pairs[1], ddof=1)),))
    a, b = finite(np.asarray(arm, dtype=float)), finite(np.asarray(baseline, dtype=float))
    if len(a) < 2 or len(b) < 2:
        return None
    return SeedNoise((float(a.std(ddof=1)), float(b.std(ddof=1))))


def verdict(p_adjusted: float, diff: float, n_arm: int, n_base: int, *, higher_is_better: bool | None = True,
            alpha: float = ALPHA, correction: str = "holm", interval: tuple[float, float] | None = None) -> str:
    """"better (p_holm=…)" / "worse (…)" when the adjusted p < α, else "not distinguishable at n=… seeds
    (p_holm=…)"; an interval that excludes 0 beside a non-rejection is called out."""
    if n_arm < 2 or n_base < 2:
        return "needs ≥ 2 seeds"
    name = f"p_{correction}" if correction != "none" else "p"
    shown = f"{name}={format_p(p_adjusted, alpha)}"
    if math.isfinite(p_adjusted) and p_adjusted < alpha and diff != 0:
        if higher_is_better is None:  # no direction is better
            return f"{'higher' if diff > 0 else 'lower'} ({shown})"
        return f"{'better' if (diff > 0) == higher_is_better else 'worse'} ({shown})"
    n = f"{n_arm}" if n_arm == n_base else f"{n_arm} vs {n_base}"
    low, high = interval or (math.nan, math.nan)
    if math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0):
        shown += f" ≥ α={alpha:g}, although the bootstrap interval excludes 0"
    return f"not distinguishable at n={n} seeds ({shown})"


def format_p(p: float, alpha: float = ALPHA) -> str:
    """`p` to 3 significant digits ("<0.001" below), with more where 3 would round it onto the other
    side of `alpha` (0.0496 is "0.0496", not "0.050", beside the verdict "better")."""
    if not math.isfinite(p):
        return "—"
    if p < 0.001 and alpha > 0.001:
        return "<0.001"
    for digits in range(3, 17):
        text = f"{p:.{digits}g}"
        if (float(text) < alpha) == (p < alpha):
            return text
    return repr(p)


def summarize(runs: pd.DataFrame, arms: Sequence[str], baseline: str, *,
              metrics: Sequence[Metric] = METRICS, alpha: float = ALPHA,
              correction: str = "holm") -> pd.DataFrame:
    """One row per (arm, metric): n, diverged, mean, std, 95% CI, and the comparison to the baseline
    (test used, t, p, Wilcoxon p, p adjusted across the arms, verdict on the adjusted p), with what the
    seeds could detect: the smallest difference detected with 80% power at the arm's n, and the seeds per
    arm the observed difference needs (`reglab.study.power`, at α/m for m arms unless uncorrected).

    `runs` needs columns ``arm``, ``status`` and the metric columns (and ``seed`` to pair); only "done"
    runs count.
    """
    if correction not in (*CORRECTIONS, "none"):
        raise ValueError(f"correction: unknown {correction!r} (choose from {', '.join(CORRECTIONS)})")
    rows = []
    done = runs[runs["status"] == "done"]
    if "seed" not in done:
        done = done.assign(seed=[f"run{i}" for i in range(len(done))])  # no seeds: never paired
    for metric in metrics:
        if metric.column not in runs or done[metric.column].isna().all():
            continue
        base_values = done.loc[done["arm"] == baseline].set_index("seed")[metric.column]
        n_base = int(np.isfinite(base_values.astype(float)).sum())
        of_metric, noises = [], {}
        for arm in arms:
            of_arm = runs[runs["arm"] == arm]
            values = done.loc[done["arm"] == arm].set_index("seed")[metric.column]
            row = {"arm": arm, "metric": metric.column, "label": metric.label,
                   "higher_is_better": metric.higher_is_better, "runs": len(of_arm),
                   "diverged": int((of_arm["status"] == "diverged").sum()),
                   "unfinished": int((~of_arm["status"].isin(["done", "diverged"])).sum()),
                   **asdict(describe(values)), "correction": correction, "p_adjusted": math.nan}
            if arm == baseline:
                row.update(diff=0.0, diff_low=math.nan, diff_high=math.nan, test="—", t=math.nan,
                           p_value=math.nan, p_wilcoxon=math.nan, n_pairs=0, verdict="baseline",
                           detectable_diff=math.nan, seeds_needed=math.nan)
            else:
                row.update(asdict(compare(values, base_values)))
                noises[arm] = seed_noise(values, base_values)
            of_metric.append(row)
        family = [r for r in of_metric if r["arm"] != baseline]  # one family per metric
        raw = [r["p_value"] for r in family]
        adjusted = adjust_p(raw, correction) if correction != "none" else np.asarray(raw, dtype=float)
        tests = int(np.isfinite(np.asarray(raw, dtype=float)).sum())
        planning_alpha = alpha / tests if correction != "none" and tests > 1 else alpha  # Holm's strictest step
        for row, p_adj in zip(family, adjusted, strict=True):
            row.update(p_adjusted=float(p_adj), verdict=verdict(
                p_adj, row["diff"], row["n"], n_base, higher_is_better=metric.higher_is_better, alpha=alpha,
                correction=correction, interval=(row["diff_low"], row["diff_high"])))
            noise = noises.get(row["arm"])
            row.update(
                detectable_diff=noise.detectable(row["n"], planning_alpha, n_base=n_base) if noise else math.nan,
                seeds_needed=noise.seeds_needed(row["diff"], planning_alpha) if noise else math.nan)
        rows += of_metric
    return pd.DataFrame(rows, columns=None if rows else ["arm", "metric", "label", "n", "mean", "verdict"])
