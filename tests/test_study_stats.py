"""Statistics and stability against scipy/numpy computed independently on known samples."""

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reglab.report.format import p_value
from reglab.study.stability import fluctuation, seed_spread
from reglab.study.stats import compare, describe, format_p, summarize, verdict

A = [0.712, 0.705, 0.720, 0.709, 0.716]
B = [0.650, 0.662, 0.655, 0.648, 0.659]


def test_describe_matches_numpy_and_student_t():
    s = describe(A)
    x = np.array(A)
    assert s.n == 5 and s.mean == pytest.approx(x.mean()) and s.std == pytest.approx(x.std(ddof=1))
    low, high = stats.t.interval(0.95, df=4, loc=x.mean(), scale=stats.sem(x))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))
    # hand value: t_{0.975, 4} = 2.776445
    assert s.ci_high - s.mean == pytest.approx(2.776445 * x.std(ddof=1) / math.sqrt(5), rel=1e-5)


def test_describe_small_samples_and_nan():
    assert describe([]).n == 0 and math.isnan(describe([]).mean)
    one = describe([0.5])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert describe([1.0, float("nan"), 3.0]).n == 2


def test_clearly_different_means_are_better_or_worse():
    c = compare(A, B)
    ref = stats.ttest_ind(A, B, equal_var=False)
    assert c.test == "Welch t" and c.p_value == pytest.approx(ref.pvalue) and c.t == pytest.approx(ref.statistic)
    assert c.diff == pytest.approx(np.mean(A) - np.mean(B)) and c.p_value < 1e-5
    assert verdict(c.p_value, c.diff, 5, 5) == "better (p_holm=<0.001)"
    assert c.diff_low < c.diff < c.diff_high and c.diff_low > 0  # the bootstrap interval excludes 0
    assert verdict(c.p_value, -c.diff, 5, 5).startswith("worse")
    assert verdict(c.p_value, c.diff, 5, 5, higher_is_better=False).startswith("worse")  # e.g. a loss


def test_identical_distributions_are_not_distinguishable():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.7, 0.01, 3), rng.normal(0.7, 0.01, 3)
    c = compare(a, b)
    assert c.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue) and c.p_value > 0.05
    assert verdict(c.p_value, c.diff, 3, 3).startswith("not distinguishable at n=3 seeds (p_holm=")
    same = compare([0.7, 0.7, 0.7], [0.7, 0.7, 0.7])
    assert same.diff == 0 and verdict(same.p_value, same.diff, 3, 3) == "not distinguishable at n=3 seeds (p_holm=1)"


def test_an_arm_equal_to_the_baseline_counts_in_the_holm_family():
    """All seeds equal to the baseline's: p = 1 (scipy's t-test says NaN), and the comparison is still
    one of the family's m tests, so the other arm's Holm p is min(1, 2p), as statsmodels' multipletests."""
    from reglab.study.stats import METRIC_BY_COLUMN

    base, better = [0.70, 0.80, 0.90], [0.72, 0.815, 0.93]
    runs = pd.DataFrame([{"arm": arm, "seed": seed, "status": "done", "final_test_acc": value}
                         for arm, values in (("base", base), ("same", base), ("a", better))
                         for seed, value in enumerate(values)])
    out = summarize(runs, ["base", "same", "a"], "base", metrics=[METRIC_BY_COLUMN["final_test_acc"]]).set_index("arm")
    p_a = stats.ttest_rel(better, base).pvalue
    assert out.loc["same", "p_value"] == 1 and out.loc["same", "p_adjusted"] == 1
    assert out.loc["a", "p_adjusted"] == pytest.approx(min(1.0, 2 * p_a))
    assert compare([0.5, 0.5, 0.5], [0.5, 0.5]).p_value == 1  # Welch, one value in both samples


def test_verdict_rules():
    assert verdict(0.01, 0.02, 1, 3) == "needs ≥ 2 seeds"
    assert verdict(0.01, 0.02, 3, 3) == "better (p_holm=0.01)"
    assert verdict(0.01, -0.02, 3, 3, correction="bh") == "worse (p_bh=0.01)"
    assert verdict(0.2, 0.02, 3, 2) == "not distinguishable at n=3 vs 2 seeds (p_holm=0.2)"
    assert verdict(math.nan, 0.0, 3, 3) == "not distinguishable at n=3 seeds (p_holm=—)"
    assert verdict(0.08, 0.02, 3, 3, interval=(0.001, 0.03)) == (
        "not distinguishable at n=3 seeds (p_holm=0.08 ≥ α=0.05, although the bootstrap interval excludes 0)")
    assert compare([0.9], [0.5, 0.6]).test == "—"


def test_a_shown_p_is_on_the_same_side_of_alpha_as_the_verdict():
    # 3 decimals made 0.0496 "0.050" beside "better"; the shown p must never contradict the verdict
    assert verdict(0.0496, 1.0, 5, 5) == "better (p_holm=0.0496)"
    assert verdict(0.04996, 1.0, 5, 5) == "better (p_holm=0.04996)"
    rng = np.random.default_rng(0)
    for p in np.r_[rng.uniform(0.04, 0.06, 2000), 0.05, 0.0499999999, 0.0500000001, 0.0004, 0.2]:
        for alpha in (0.05, 0.01, 0.1):
            for shown in (format_p(p, alpha), p_value(p) if alpha == 0.05 else format_p(p, alpha)):
                as_number = 0.0 if shown == "<0.001" else float(shown)
                assert (as_number < alpha) == (p < alpha), (p, alpha, shown)
                assert shown == "<0.001" or abs(as_number - p) <= 5e-3 * p  # ≥ 3 significant digits


def test_summarize_excludes_diverged_runs_and_counts_them():
    runs = pd.DataFrame({
        "arm": ["base"] * 3 + ["x"] * 3,
        "status": ["done", "done", "done", "done", "done", "diverged"],
        "final_test_acc": [0.70, 0.71, 0.72, 0.80, 0.81, math.nan],
    })
    table = summarize(runs, ["base", "x"], "base")
    x = table[(table["arm"] == "x") & (table["metric"] == "final_test_acc")].iloc[0]
    assert x["n"] == 2 and x["runs"] == 3 and x["diverged"] == 1
    assert x["mean"] == pytest.approx(0.805)
    welch = stats.ttest_ind([0.80, 0.81], [0.70, 0.71, 0.72], equal_var=False)
    assert x["p_value"] == pytest.approx(welch.pvalue) and x["test"] == "Welch t"  # no seeds: not paired
    assert x["p_adjusted"] == pytest.approx(welch.pvalue)  # one arm: Holm leaves p alone
    assert x["verdict"].startswith("better (p_holm=")
    assert table[table["arm"] == "base"].iloc[0]["verdict"] == "baseline"
    assert set(table["metric"]) == {"final_test_acc"}  # metrics without values are left out


def test_fluctuation_is_mean_abs_difference_over_the_last_half():
    losses = [2.0, 1.0, 0.8, 0.7, 0.75, 0.6, 0.65, 0.6, 0.62, 0.58]  # T = 10: epochs t = 6..10
    expected = np.mean([abs(0.6 - 0.75), abs(0.65 - 0.6), abs(0.6 - 0.65), abs(0.62 - 0.6), abs(0.58 - 0.62)])
    assert fluctuation(losses) == pytest.approx(expected)
    assert fluctuation([1.0, 0.5]) == pytest.approx(0.5)
    assert fluctuation([1.0, 0.5, 0.7]) == pytest.approx(np.mean([0.5, 0.2]))  # t = 2, 3
    assert math.isnan(fluctuation([1.0]))


def test_seed_spread_is_mean_over_epochs_of_across_seed_std():
    curves = np.array([[0.5, 0.6, 0.7], [0.52, 0.63, 0.69], [0.49, 0.61, 0.74]])  # seeds × epochs
    epochs = pd.DataFrame([{"seed": s, "epoch": t + 1, "test_acc": curves[s, t]}
                           for s in range(3) for t in range(3)])
    assert seed_spread(epochs) == pytest.approx(curves.std(axis=0, ddof=1).mean())
    assert math.isnan(seed_spread(epochs[epochs["seed"] == 0]))


def test_stability_table_fluctuation_std_is_the_sample_std():
    from reglab.study.stability import stability_table

    runs = pd.DataFrame({"arm": ["a", "a", "a", "a"], "status": ["done", "done", "done", "diverged"],
                         "run_id": ["a0", "a1", "a2", "a3"], "fluctuation": [1.0, 2.0, 4.0, math.nan]})
    epochs = pd.DataFrame(columns=["arm", "run_id", "seed", "epoch", "test_acc", "test_loss"])
    row = stability_table(runs, epochs, ["a"]).iloc[0]
    assert row["n"] == 3 and row["diverged"] == 1
    assert row["fluctuation_mean"] == pytest.approx(statistics.mean([1.0, 2.0, 4.0]))
    assert row["fluctuation_std"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))  # ddof = 1
