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
def test_power_equals_statsmodels(n, effect, alpha):
    """Paired: statsmodels' one-sample t power; Welch with equal stds: its two-sample power (ν = 2n − 2)."""
    sigma = 0.7
    paired = SeedNoise((sigma,)).power(effect * sigma, n, alpha)
    assert paired == pytest.approx(TTestPower().power(effect_size=effect, nobs=n, alpha=alpha), rel=1e-9)
    welch = SeedNoise((sigma, sigma)).power(effect * sigma, n, alpha)
    assert welch == pytest.approx(TTestIndPower().power(effect_size=effect, nobs1=n, alpha=alpha), rel=1e-9)


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
    assert SeedNoise((0.0,)).detectable(3, 0.05) == 0.0
    assert SeedNoise((0.0,)).seeds_needed(0.01, 0.05) == 2.0
    assert noise.power(1.0, MAX_SEEDS, 0.05) == pytest.approx(1.0)


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
