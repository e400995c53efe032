"""Paired tests, multiple-comparison corrections and rliable-style aggregates against independent
computations: scipy / statsmodels on random data, hand-written resampling, constructed cases."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reglab.study.robust import (
    improvement,
    iqm,
    iqm_interval,
    performance_profile,
    prob_improvement,
    robust_table,
    stratified_bootstrap,
)
from reglab.study.stats import adjust_p, compare, summarize


def test_paired_comparison_matches_scipy_on_random_data():
    rng = np.random.default_rng(3)
    for _ in range(5):
        b = rng.normal(0.7, 0.05, 8)
        a = b + rng.normal(0.01, 0.01, 8)
        seeds = rng.permutation(20)[:8]
        c = compare(pd.Series(a, index=seeds), pd.Series(b, index=seeds).sample(frac=1, random_state=1))
        ref = stats.ttest_rel(a, b)
        assert c.test == "paired t" and c.n_pairs == 8
        assert c.t == pytest.approx(ref.statistic) and c.p_value == pytest.approx(ref.pvalue)
        assert c.p_wilcoxon == pytest.approx(stats.wilcoxon(a - b).pvalue)
        assert c.diff == pytest.approx(np.mean(a - b))


def test_unmatched_seeds_fall_back_to_welch():
    a = pd.Series([0.71, 0.72, 0.70], index=[0, 1, 2])
    b = pd.Series([0.69, 0.70, 0.68], index=[0, 1, 3])
    c = compare(a, b)
    assert c.test == "Welch t" and c.n_pairs == 0
    assert c.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_paired_detects_a_small_constant_shift_that_welch_misses_at_n5():
    seed_effect = np.array([0.60, 0.75, 0.68, 0.82, 0.55])  # seeds vary a lot (std ≈ 0.11)
    noise = np.array([0.001, -0.002, 0.0015, -0.001, 0.0005])
    base, arm = seed_effect, seed_effect + 0.01 + noise  # +1 pp on every seed
    seeds = range(5)
    paired = compare(pd.Series(arm, index=seeds), pd.Series(base, index=seeds))
    welch = compare(arm, base)
    assert paired.test == "paired t" and paired.p_value < 0.001
    assert welch.test == "Welch t" and welch.p_value > 0.5
    assert paired.diff_low > 0 and welch.diff_low < 0 < welch.diff_high


def test_paired_interval_resamples_seeds_and_welch_each_group():
    seeds = [0, 1, 2, 3, 4]
    a = np.array([0.91, 0.93, 0.90, 0.94, 0.92])
    d = np.array([0.01, 0.012, 0.008, 0.011, 0.009])
    paired = compare(pd.Series(a + d, index=seeds), pd.Series(a, index=seeds))
    rng = np.random.default_rng(0)  # the brute-force percentile bootstrap of the per-seed differences
    ref = d[rng.integers(0, 5, (10_000, 5))].mean(1)
    assert (paired.diff_low, paired.diff_high) == pytest.approx(tuple(np.percentile(ref, [2.5, 97.5])), rel=1e-3)
    b = np.array([0.88, 0.90, 0.89])
    welch = compare(a, b)
    rng = np.random.default_rng(0)
    ref = a[rng.integers(0, 5, (10_000, 5))].mean(1) - b[rng.integers(0, 3, (10_000, 3))].mean(1)
    assert (welch.diff_low, welch.diff_high) == pytest.approx(tuple(np.percentile(ref, [2.5, 97.5])), abs=2e-3)


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_corrections_match_statsmodels_on_random_p_values(method):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 13):
        p = rng.uniform(0, 0.2, m) ** 2
        ref = multipletests(p, method={"holm": "holm", "bh": "fdr_bh"}[method])[1]
        assert adjust_p(p, method) == pytest.approx(ref)
    with_nan = adjust_p([0.01, math.nan, 0.04], method)
    assert math.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx(adjust_p([0.01, 0.04], method))


def test_holm_by_hand():
    # sorted p: 0.01, 0.02, 0.04 -> 3·0.01, max(0.03, 2·0.02), max(0.04, 1·0.04)
    assert adjust_p([0.04, 0.01, 0.02], "holm") == pytest.approx([0.04, 0.03, 0.04])
    with pytest.raises(ValueError, match="correction: unknown 'bonf'"):
        adjust_p([0.1], "bonf")


def _runs(table: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"arm": arm, "seed": s, "status": "done", "final_test_acc": v}
                         for arm, values in table.items() for s, v in enumerate(values)])


def test_summary_verdict_uses_the_adjusted_p_and_names_it():
    rng = np.random.default_rng(5)
    base = rng.normal(0.7, 0.05, 5)
    runs = _runs({"base": base, "a": base + 0.02 + rng.normal(0, 0.012, 5),
                  **{f"n{i}": base + rng.normal(0, 0.01, 5) for i in range(4)}})
    for correction in ("holm", "bh"):
        table = summarize(runs, ["base", "a", "n0", "n1", "n2", "n3"], "base", correction=correction)
        rows = table[table["arm"] != "base"]
        assert (rows["test"] == "paired t").all()
        raw = [stats.ttest_rel(runs.loc[runs["arm"] == a, "final_test_acc"], base).pvalue for a in rows["arm"]]
        assert rows["p_value"].to_numpy() == pytest.approx(raw)
        assert rows["p_adjusted"].to_numpy() == pytest.approx(adjust_p(raw, correction))
        for _, r in rows.iterrows():
            assert f"p_{correction}=" in r["verdict"]
            assert r["verdict"].startswith("better") == (r["p_adjusted"] < 0.05)


def test_interval_excluding_zero_beside_not_distinguishable_says_why():
    # one arm with p ≈ 0.02 unadjusted among 4 null arms: Holm multiplies it past 0.05
    base = np.array([0.70, 0.75, 0.68, 0.72, 0.74])
    shift = np.array([0.010, 0.018, 0.004, 0.022, 0.006])
    runs = _runs({"base": base, "a": base + shift,
                  **{f"n{i}": base + np.roll([0.01, -0.01, 0.005, -0.005, 0.0], i) for i in range(4)}})
    table = summarize(runs, ["base", "a", "n0", "n1", "n2", "n3"], "base")
    a = table[table["arm"] == "a"].iloc[0]
    assert a["p_value"] < 0.05 < a["p_adjusted"] and a["diff_low"] > 0
    assert a["verdict"].startswith("not distinguishable at n=5 seeds (p_holm=")
    assert "bootstrap interval excludes 0" in a["verdict"]


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(np.mean([3, 4, 5, 6]))
    assert iqm([0.5, 0.6, 0.7, 0.8]) == pytest.approx(0.65)
    assert math.isnan(iqm([]))


def _hand_stratified(strata, statistic, resamples, rng):
    values = []
    for _ in range(resamples):
        values.append(statistic(*[s[rng.integers(0, len(s), len(s))] for s in strata]))
    return np.percentile(values, [2.5, 97.5])


def test_stratified_bootstrap_agrees_with_a_hand_written_loop():
    rng = np.random.default_rng(11)
    a, b = rng.normal(0.7, 0.03, 7), rng.normal(0.68, 0.05, 4)  # strata of different sizes

    def mean_diff(x, y, axis=-1):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    low, high = stratified_bootstrap([a, b], mean_diff, resamples=8_000, seed=1)
    ref = _hand_stratified([a, b], mean_diff, 8_000, np.random.default_rng(99))
    assert (low, high) == pytest.approx(tuple(ref), abs=0.006)
    low, high = iqm_interval(a, resamples=8_000)
    ref = _hand_stratified([a], lambda x: stats.trim_mean(x, 0.25), 8_000, np.random.default_rng(7))
    assert (low, high) == pytest.approx(tuple(ref), abs=0.006)
    assert stratified_bootstrap([[1.0, 1.0]], np.mean) == (1.0, 1.0)


def test_probability_of_improvement_known_cases_and_mann_whitney():
    assert prob_improvement([2, 3], [0, 1]) == 1.0 and prob_improvement([0, 1], [2, 3]) == 0.0
    assert prob_improvement([1, 1], [1, 1]) == 0.5
    assert prob_improvement([1, 3], [2]) == 0.5  # one pair won, one lost
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=6), rng.normal(size=5)
    assert prob_improvement(x, y) == pytest.approx(stats.mannwhitneyu(x, y).statistic / 30)
    value, low, high = improvement(x, y, resamples=2000)
    assert low <= value <= high
    assert improvement([0.1, 0.2], [0.3, 0.4], higher_is_better=False)[0] == 1.0  # lower loss wins


def test_performance_profile_counts_runs_above_tau():
    profile = performance_profile([0.1, 0.5, 0.5, 0.9], [0.0, 0.4, 0.5, 0.8, 1.0])
    assert profile.tolist() == [1.0, 0.75, 0.25, 0.25, 0.0]  # strictly above τ


def test_robust_table_per_arm():
    runs = _runs({"base": [0.7, 0.71, 0.69, 0.72], "x": [0.8, 0.81, 0.79, 0.5]})
    table = robust_table(runs, ["base", "x"], "base", "final_test_acc", resamples=500)
    x = table[table["arm"] == "x"].iloc[0]
    assert x["iqm"] == pytest.approx(np.mean([0.79, 0.8])) and x["poi"] == pytest.approx(0.75)
    assert x["iqm_low"] <= x["iqm"] <= x["iqm_high"] and math.isnan(table.iloc[0]["poi"])
