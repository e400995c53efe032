"""How many seeds a difference needs: the power of the study's own two-sided t-tests.

At n seeds per arm and a true difference δ, the study's t statistic has the noncentral t distribution
(Cohen 1988, ch. 2) with ν degrees of freedom and noncentrality λ = δ / SE(n):

* **paired** (the seeds match; σ_d the std of the per-seed differences): SE = σ_d / √n, ν = n − 1;
* **Welch** (σ_a, σ_b the two arms' stds, n runs each): SE = √((σ_a² + σ_b²) / n) and the
  Welch–Satterthwaite ν = (n − 1)(σ_a² + σ_b²)² / (σ_a⁴ + σ_b⁴).

The power is P(|T| > t₁₋α/₂,ν) = 1 − F_ν,λ(t₁₋α/₂,ν) + F_ν,λ(−t₁₋α/₂,ν) (the last term computed as
1 − F_ν,−λ(t₁₋α/₂,ν): scipy's CDF far in the lower tail can be NaN). `SeedNoise` answers the two
planning questions with it: the smallest difference the study detects with a given power at its n
(`detectable`), and the seeds per arm a given difference needs (`seeds_needed`). Both take the
observed stds as the true ones; from few seeds they are rough (docs/studies.md, "How many seeds").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize, stats

POWER = 0.8
MAX_SEEDS = 10_000
"""`seeds_needed` answers ∞ above this."""


@dataclass(frozen=True)
class SeedNoise:
    """The seed-to-seed noise of one comparison: ``(σ_d,)`` when paired, ``(σ_arm, σ_base)`` for Welch."""

    sds: tuple[float, ...]

    @property
    def paired(self) -> bool:
        return len(self.sds) == 1

    def standard_error(self, n: int) -> float:
        return math.sqrt(sum(s * s for s in self.sds) / n)

    def df(self, n: int) -> float:
        if self.paired:
            return n - 1.0
        a, b = (s * s for s in self.sds)
        return (n - 1.0) * (a + b) ** 2 / (a * a + b * b) if a + b > 0 else 2.0 * (n - 1)

    def power(self, diff: float, n: int, alpha: float) -> float:
        """Probability that the two-sided t-test at level `alpha` rejects with n seeds per arm when the
        true difference is `diff`."""
        se, df = self.standard_error(n), self.df(n)
        if se == 0:
            return 1.0 if diff != 0 else alpha
        t, ncp = stats.t.ppf(1 - alpha / 2, df), abs(diff) / se
        return float(stats.nct.sf(t, df, ncp) + stats.nct.sf(t, df, -ncp))  # P(T < −t | λ) = P(T > t | −λ)

    def seeds_needed(self, diff: float, alpha: float, power: float = POWER) -> float:
        """Fewest seeds per arm (≥ 2) at which a true difference `diff` is detected with `power`; ∞ above
        `MAX_SEEDS`, NaN for no difference."""
        if diff == 0 or not math.isfinite(diff):
            return math.nan
        if self.power(diff, MAX_SEEDS, alpha) < power:
            return math.inf
        low, high = 1, 2  # power(low) < target ≤ power(high), found by doubling, then bisection
        while self.power(diff, high, alpha) < power:
            low, high = high, 2 * high
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (low, mid) if self.power(diff, mid, alpha) >= power else (mid, high)
        return float(high)

    def detectable(self, n: int, alpha: float, power: float = POWER) -> float:
        """Smallest true difference that n seeds per arm detect with `power` (NaN below 2 seeds)."""
        if n < 2:
            return math.nan
        se = self.standard_error(n)
        if se == 0:
            return 0.0
        high = se * (stats.t.ppf(1 - alpha / 2, self.df(n)) + 4)
        while self.power(high, n, alpha) < power:
            high *= 2
        return float(optimize.brentq(lambda d: self.power(d, n, alpha) - power, 0.0, high, xtol=se * 1e-9))
