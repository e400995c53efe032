"""Seeds a difference needs (reglab.study.power): against statsmodels' power tables, Monte Carlo runs of
the study's own tests, and the summary's columns."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.power import TTestIndPower, TTestPower

from reglab.study.power import MAX_SEEDS, SeedNoise
from reglab.study.stats import summarize


@pytest.mark.parametrize("n", [2, 3, 5, 10, 20])
@pytest.mark.parametrize("effect", [0.3, 1.0, 1.5])
@pytest.mark.parametrize("alpha", [0.05, 0.0125])
def test_paired_power_equals_statsmodels(n, effect, alpha):
    """Paired: statsmodels' one-sample t power (the noncentral t)."""
    sigma = 0.7
    paired = SeedNoise((sigma,)).power(effect * sigma, n, alpha)
    assert paired == pytest.approx(TTestPower().power(effect_size=effect, nobs=n, alpha=alpha), rel=1e-9)


def test_welch_power_is_below_the_pooled_t_tests_at_small_n_and_meets_it_at_large_n():
    """Welch's test estimates two variances, so with equal stds it has less power than Student's pooled test
    (statsmodels' TTestIndPower) at few seeds, and the same once the variances are well estimated."""
    student = TTestIndPower()
    for n in (2, 3, 5):
        assert SeedNoise((1.0, 1.0)).power(1.5, n, 0.05) < student.power(effect_size=1.5, nobs1=n, alpha=0.05) - 0.01
    assert SeedNoise((1.0, 1.0)).power(0.5, 200, 0.05) == pytest.approx(
        student.power(effect_size=0.5, nobs1=200, alpha=0.05), abs=1e-3)


@pytest.mark.parametrize("effect", [0.4, 1.0, 2.0])
def test_seeds_needed_is_the_first_n_with_enough_power(effect):
    noise = SeedNoise((1.0,))
    n = noise.seeds_needed(effect, 0.05)
    assert n == math.ceil(TTestPower().solve_power(effect_size=effect, alpha=0.05, power=0.8))
    assert noise.power(effect, int(n), 0.05) >= 0.8 > noise.power(effect, int(n) - 1, 0.05)


def test_detectable_difference_has_the_power_asked_for():
    for noise in (SeedNoise((0.02,)), SeedNoise((0.01, 0.03))):
        for n in (2, 3, 10):
            d = noise.detectable(n, 0.05)
            assert noise.power(d, n, 0.05) == pytest.approx(0.8, abs=1e-6)
    assert SeedNoise((1.0,)).detectable(10, 0.05) == pytest.approx(
        TTestPower().solve_power(nobs=10, alpha=0.05, power=0.8), rel=1e-5)


@pytest.mark.parametrize(("n_arm", "n_base", "sd_arm", "sd_base", "alpha"), [
    (2, 2, 1.0, 1.0, 0.05), (3, 3, 1.0, 1.0, 0.05 / 3), (2, 3, 1.0, 1.0, 0.05), (3, 10, 3.0, 1.0, 0.05 / 3),
    (5, 5, 1.0, 10.0, 0.05)])
def test_welch_detectable_difference_is_detected_four_times_in_five(n_arm, n_base, sd_arm, sd_base, alpha):
    """At its detectable |Δ| (few seeds, equal or unequal arms and stds), scipy's Welch test on simulated
    seeds rejects 80% of the time (the noncentral-t shortcut gave as little as 48% here)."""
    rng = np.random.default_rng(n_arm * 10 + n_base)
    noise = SeedNoise((sd_arm, sd_base))
    d = noise.detectable(n_arm, alpha, n_base=n_base)
    arm, base = rng.normal(d, sd_arm, (40_000, n_arm)), rng.normal(0.0, sd_base, (40_000, n_base))
    rate = (stats.ttest_ind(arm, base, equal_var=False, axis=1).pvalue < alpha).mean()
    assert rate == pytest.approx(0.8, abs=0.008)  # 4 standard errors of 40,000 trials


def test_monte_carlo_rejection_rates_match():
    """The tests the study runs (scipy's paired t and Welch t), repeated on simulated seeds at the planned n,
    reject about 80% of the time."""
    rng = np.random.default_rng(0)
    trials, diff = 20_000, 0.01
    paired = SeedNoise((0.012,))
    n = int(paired.seeds_needed(diff, 0.05))
    base = rng.normal(0.7, 0.05, (trials, n))  # the common seed effect cancels in the pairs
    arm = base + rng.normal(diff, 0.012, (trials, n))
    rate = (stats.ttest_rel(arm, base, axis=1).pvalue < 0.05).mean()
    assert rate == pytest.approx(paired.power(diff, n, 0.05), abs=0.015)
    welch = SeedNoise((0.005, 0.02))  # unequal spreads: Welch–Satterthwaite's ν
    n = int(welch.seeds_needed(diff, 0.05))
    arm, base = rng.normal(0.7 + diff, 0.005, (trials, n)), rng.normal(0.7, 0.02, (trials, n))
    rate = (stats.ttest_ind(arm, base, equal_var=False, axis=1).pvalue < 0.05).mean()
    assert rate == pytest.approx(welch.power(diff, n, 0.05), abs=0.02)
    assert rate >= 0.77


def test_edge_cases():
    noise = SeedNoise((1.0,))
    assert math.isnan(noise.seeds_needed(0.0, 0.05))
    assert noise.seeds_needed(1e-3, 0.05) == math.inf  # ≈ 7.8 million seeds
    assert noise.seeds_needed(-1.0, 0.05) == noise.seeds_needed(1.0, 0.05)
    assert math.isnan(noise.detectable(1, 0.05))
    for flat in (SeedNoise((0.0,)), SeedNoise((0.0, 0.0)), SeedNoise((math.nan,)), SeedNoise((math.inf, 1.0))):
        assert math.isnan(flat.detectable(3, 0.05)) and math.isnan(flat.seeds_needed(0.01, 0.05))  # nothing to plan
    assert noise.power(1.0, MAX_SEEDS, 0.05) == pytest.approx(1.0)
    assert noise.power(1e12, 2, 0.05) == 1.0  # scipy's noncentral t is NaN that far out
    assert noise.power(40.0, 2, 0.0125) < 0.8  # but not already at λ = 40 with one degree of freedom
    assert math.isnan(noise.power(math.nan, 3, 0.05))


def test_summary_columns_plan_at_the_corrected_level():
    """Paired arms: σ_d from the per-seed differences, α/m for m arms under Holm; α uncorrected."""
    rng = np.random.default_rng(1)
    base = rng.normal(0.8, 0.02, 4)
    arms = {"base": base, "a": base + rng.normal(0.01, 0.005, 4), "b": base + rng.normal(-0.002, 0.004, 4)}
    runs = pd.DataFrame([{"arm": arm, "seed": s, "status": "done", "final_test_acc": v}
                         for arm, values in arms.items() for s, v in enumerate(values)])
    for correction, alpha in (("holm", 0.025), ("none", 0.05)):
        summary = summarize(runs, list(arms), "base", correction=correction).set_index(["metric", "arm"])
        for arm in ("a", "b"):
            row = summary.loc[("final_test_acc", arm)]
            noise = SeedNoise((float(np.std(arms[arm] - base, ddof=1)),))
            assert row["detectable_diff"] == pytest.approx(noise.detectable(4, alpha))
            assert row["seeds_needed"] == noise.seeds_needed(row["diff"], alpha)
        assert math.isnan(summary.loc[("final_test_acc", "base"), "seeds_needed"])


def test_an_arm_short_of_a_seed_plans_with_welch_at_its_own_and_the_baselines_counts():
    """A diverged seed unpairs the arm: the summary plans with both arms' stds and seed counts (4 vs 5)."""
    rng = np.random.default_rng(2)
    base, arm = rng.normal(0.8, 0.02, 5), rng.normal(0.81, 0.01, 5)
    runs = pd.DataFrame([{"arm": name, "seed": s, "status": "diverged" if (name, s) == ("a", 4) else "done",
                          "final_test_acc": v} for name, values in (("base", base), ("a", arm))
                         for s, v in enumerate(values)])
    row = summarize(runs, ["base", "a"], "base").set_index(["metric", "arm"]).loc[("final_test_acc", "a")]
    noise = SeedNoise((float(np.std(arm[:4], ddof=1)), float(np.std(base, ddof=1))))
    assert row["test"] == "Welch t" and row["n"] == 4
    assert row["detectable_diff"] == pytest.approx(noise.detectable(4, 0.05, n_base=5))
    assert row["detectable_diff"] != pytest.approx(noise.detectable(4, 0.05))  # the baseline's 5th seed counts
