"""The numbers docs/studies.md ("How many seeds") quotes about the planning columns, regenerated:

1. how noisy "seeds to detect Δ" is: simulated paired studies whose true answer is known (Δ = σ_d at
   α/3, 14 seeds), the column's 10th–90th percentile from 3, 5 and 10 seeds;
2. why Welch's power is computed exactly: at the difference the noncentral-t shortcut (Welch–Satterthwaite
   ν of the true σ's) calls 80% power, how often scipy's Welch test really rejects.

    python tools/seed_planning_spread.py        # ≈ 20 s; seeded, so the output is the same every time
"""

import numpy as np
from scipy import optimize, stats

from reglab.study.power import SeedNoise

ALPHA = 0.05


def shortcut_power(diff: float, sd: float, n: int, alpha: float) -> float:
    """Welch's power as a noncentral t with ν = 2(n − 1) (equal σ's and arms) — the shortcut replaced."""
    df, ncp, t = 2 * (n - 1), diff / (sd * np.sqrt(2 / n)), stats.t.ppf(1 - alpha / 2, 2 * (n - 1))
    return stats.nct.sf(t, df, ncp) + stats.nct.sf(t, df, -ncp)


def main() -> None:
    rng = np.random.default_rng(0)
    alpha = ALPHA / 3
    truth = SeedNoise((1.0,)).seeds_needed(1.0, alpha)
    print(f"1. seeds to detect Δ = σ_d at α/3: truth {truth:.0f}; the column from a study of n seeds (2,000 studies)")
    for n in (3, 5, 10):
        d = rng.normal(1.0, 1.0, (2000, n))
        est = [SeedNoise((float(row.std(ddof=1)),)).seeds_needed(float(row.mean()), alpha) for row in d]
        low, mid, high = np.quantile(est, [0.1, 0.5, 0.9])
        print(f"   n = {n:2d}: 10th–90th percentile {low:.0f}–{high:.0f}, median {mid:.0f}")
    print("2. Welch, equal arms and σ = 1: power of scipy's test at the shortcut's 80% difference (40,000 trials)")
    for a in (ALPHA, alpha):
        for n in (2, 3, 5):
            diff = optimize.brentq(lambda x, n=n, a=a: shortcut_power(x, 1.0, n, a) - 0.8, 1e-6, 1e3)
            arm, base = rng.normal(diff, 1.0, (40_000, n)), rng.normal(0.0, 1.0, (40_000, n))
            rate = (stats.ttest_ind(arm, base, equal_var=False, axis=1).pvalue < a).mean()
            print(f"   α = {a:.4f}, n = {n}: rejects {rate:.2f} (exact: {SeedNoise((1.0, 1.0)).power(diff, n, a):.2f})")


if __name__ == "__main__":
    main()
