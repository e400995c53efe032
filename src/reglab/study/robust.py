"""Aggregates for few runs, after Agarwal et al., "Deep RL at the Edge of the Statistical Precipice"
(NeurIPS 2021, the rliable library):

* interquartile mean (IQM): the mean of the middle 50 % of the runs,
  `scipy.stats.trim_mean(x, 0.25)` — robust to one outlying seed, less noisy than the median;
* stratified bootstrap: each stratum (an arm's runs; a task's runs) is resampled on its own with its
  own size, and a percentile interval is read off the statistic (`scipy.stats.bootstrap`);
* probability of improvement P(X > Y) + ½ P(X = Y) of a random run X of an arm over a random run Y of
  the baseline: the Mann–Whitney U statistic divided by n·m;
* performance profile: the fraction of an arm's runs whose score exceeds τ, as a function of τ.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats


def finite(values: Sequence[float]) -> np.ndarray:
    """The finite values, as a float array."""
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the 25 %-trimmed mean (`scipy.stats.trim_mean`)."""
    x = finite(values)
    return float(stats.trim_mean(x, 0.25)) if len(x) else math.nan


def stratified_bootstrap(strata: Sequence[Sequence[float]], statistic: Callable[..., np.ndarray], *,
                         resamples: int = 5_000, confidence: float = 0.95,
                         seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `statistic(*strata)`, each stratum resampled independently.

    `statistic` takes one array per stratum and reduces along ``axis=-1`` (vectorised, as
    `scipy.stats.bootstrap` calls it). NaN when a stratum has fewer than 2 values or all resamples agree.
    """
    data = tuple(finite(s) for s in strata)
    if any(len(s) < 2 for s in data):
        return math.nan, math.nan
    if all(np.ptp(s) == 0 for s in data):
        value = float(statistic(*data))
        return value, value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples: the interval stands
        result = stats.bootstrap(data, statistic, n_resamples=resamples, confidence_level=confidence,
                                 method="percentile", vectorized=True, paired=False,
                                 rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _iqm_stat(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(x, 0.25, axis=axis)


def iqm_interval(values: Sequence[float], **kwargs) -> tuple[float, float]:
    """Stratified (here: one stratum) bootstrap interval of the IQM."""
    return stratified_bootstrap([values], _iqm_stat, **kwargs)


def prob_improvement(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(X > Y) + ½ P(X = Y) over all pairs of the last axis (the Mann–Whitney U / (n·m))."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    xs, ys = np.moveaxis(x, axis, -1)[..., :, None], np.moveaxis(y, axis, -1)[..., None, :]
    return ((xs > ys) + 0.5 * (xs == ys)).mean(axis=(-2, -1))


def improvement(arm: Sequence[float], baseline: Sequence[float], *, higher_is_better: bool = True,
                **kwargs) -> tuple[float, float, float]:
    """P(arm run beats baseline run) and its stratified bootstrap interval (arm and baseline resampled
    each on its own); for losses "beats" means lower."""
    a, b = finite(arm), finite(baseline)
    if not (len(a) and len(b)):
        return math.nan, math.nan, math.nan
    sign = 1.0 if higher_is_better else -1.0
    value = float(prob_improvement(sign * a, sign * b))
    low, high = stratified_bootstrap([sign * a, sign * b], prob_improvement, **kwargs)
    return value, low, high


def performance_profile(values: Sequence[float], taus: Sequence[float]) -> np.ndarray:
    """Fraction of runs with a score above each τ (the empirical survival function at τ)."""
    x = finite(values)
    taus = np.asarray(taus, dtype=float)
    if not len(x):
        return np.full(taus.shape, math.nan)
    return (x[None, :] > taus[:, None]).mean(axis=1)


def robust_table(runs, arms: Sequence[str], baseline: str, column: str, *,
                 higher_is_better: bool = True, resamples: int = 5_000):
    """Per arm: n, IQM with its stratified bootstrap 95% interval, and the probability of improvement
    over the baseline with its interval (finished runs only)."""
    import pandas as pd

    done = runs[runs["status"] == "done"]
    base = done.loc[done["arm"] == baseline, column].to_numpy(float) if column in done else np.array([])
    rows = []
    for arm in arms:
        values = done.loc[done["arm"] == arm, column].to_numpy(float) if column in done else np.array([])
        low, high = iqm_interval(values, resamples=resamples)
        poi = improvement(values, base, higher_is_better=higher_is_better, resamples=resamples) \
            if arm != baseline else (math.nan, math.nan, math.nan)
        rows.append({"arm": arm, "metric": column, "n": len(finite(values)), "iqm": iqm(values),
                     "iqm_low": low, "iqm_high": high, "poi": poi[0], "poi_low": poi[1], "poi_high": poi[2]})
    return pd.DataFrame(rows)
