"""How many seeds a difference needs: the power of the study's own two-sided t-tests.

With n seeds per arm, a true difference δ and normal seed-to-seed noise:

* **paired** (the seeds match; σ_d the std of the per-seed differences): the t statistic has the
  noncentral t distribution with ν = n − 1 and λ = δ√n / σ_d (Cohen 1988, ch. 2), so the power is
  P(|T| > t₁₋α/₂,ν) = 1 − F_ν,λ(t₁₋α/₂,ν) + F_ν,λ(−t₁₋α/₂,ν) (the last term computed as
  1 − F_ν,−λ(t₁₋α/₂,ν): scipy's CDF far in the lower tail can be NaN).
* **Welch** (σ_a, σ_b the arms' stds, n_a and n_b runs): its statistic is not noncentral t, and the
  noncentral t with the Welch–Satterthwaite ν of the true σ's overstates the power at small n (0.70
  instead of 0.80 at n = 3). The power is computed exactly instead: given the sample variances s_a², s_b²
  (independent of the means), the difference of means is N(δ, τ²) with τ² = σ_a²/n_a + σ_b²/n_b and the
  test rejects when it lies beyond ± t₁₋α/₂,ν̂ · ŝ (ŝ² = s_a²/n_a + s_b²/n_b, ν̂ Welch–Satterthwaite's
  from the s²), so the power is the mean over s_a², s_b² ~ σ²χ²ₙ₋₁/(n − 1) of
  Φ((δ − t·ŝ)/τ) + Φ((−δ − t·ŝ)/τ), a 2-D Gauss–Legendre quadrature over the two χ² quantiles.

`SeedNoise` answers the two planning questions with it: the smallest difference the study detects with
a given power at its n (`detectable`), and the seeds per arm a given difference needs (`seeds_needed`).
Both take the observed stds as the true ones; from few seeds they are rough (docs/studies.md, "How many
seeds").
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

POWER = 0.8
MAX_SEEDS = 10_000
"""`seeds_needed` answers ∞ above this."""
QUADRATURE_NODES = 32
"""Gauss–Legendre nodes per sample variance of the Welch power (≤ 1e-5 from a 1500-node midpoint rule)."""
CERTAIN = 40.0
"""Beyond λ = CERTAIN · t₁₋α/₂,ν the paired power is 1 to double precision (it misses only where χ²_ν/ν ≥ 1600);
scipy's noncentral t returns NaN far out."""


@functools.cache
def _chi2_nodes(df: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes of χ²_df / df over its quantiles, and their weights (summing to 1)."""
    u, w = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    return stats.chi2.ppf((u + 1) / 2, df) / df, w / 2


@dataclass(frozen=True)
class SeedNoise:
    """The seed-to-seed noise of one comparison: ``(σ_d,)`` when paired, ``(σ_arm, σ_base)`` for Welch."""

    sds: tuple[float, ...]

    @property
    def paired(self) -> bool:
        return len(self.sds) == 1

    def power(self, diff: float, n: int, alpha: float, n_base: int | None = None) -> float:
        """Probability that the two-sided test at level `alpha` rejects when the true difference is `diff`,
        with n seeds per arm (Welch: n in the arm and `n_base`, default n, in the baseline)."""
        if not all(math.isfinite(s) for s in self.sds) or not math.isfinite(diff):
            return math.nan
        if self.paired:
            se, t = self.sds[0] / math.sqrt(n), stats.t.ppf(1 - alpha / 2, n - 1)
            if se == 0 or abs(diff) / se > CERTAIN * t:
                return 1.0 if diff != 0 else alpha
            ncp = abs(diff) / se
            return float(stats.nct.sf(t, n - 1, ncp) + stats.nct.sf(t, n - 1, -ncp))  # P(T < −t | λ) = P(T > t | −λ)
        return self._welch_power(abs(diff), n, n_base or n, alpha)

    def _welch_power(self, diff: float, na: int, nb: int, alpha: float) -> float:
        (sa, sb), tau = self.sds, math.sqrt(self.sds[0] ** 2 / na + self.sds[1] ** 2 / nb)
        if tau == 0:
            return 1.0 if diff != 0 else alpha
        (xa, wa), (xb, wb) = _chi2_nodes(na - 1), _chi2_nodes(nb - 1)
        va, vb = np.meshgrid(sa**2 * xa / na, sb**2 * xb / nb, indexing="ij")  # ŝ² terms at the nodes
        nu = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        cut = stats.t.ppf(1 - alpha / 2, nu) * np.sqrt(va + vb)
        rejected = stats.norm.sf((cut - diff) / tau) + stats.norm.cdf((-cut - diff) / tau)
        return float(wa @ rejected @ wb)

    def seeds_needed(self, diff: float, alpha: float, power: float = POWER) -> float:
        """Fewest seeds per arm (≥ 2, equal arms) at which a true difference `diff` is detected with
        `power`; ∞ above `MAX_SEEDS`, NaN for no difference or no spread (nothing to plan from)."""
        if diff == 0 or not math.isfinite(diff) or not self._spread():
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

    def detectable(self, n: int, alpha: float, power: float = POWER, n_base: int | None = None) -> float:
        """Smallest true difference that n seeds per arm (Welch: n and `n_base`) detect with `power`;
        NaN below 2 seeds or without spread."""
        if n < 2 or (n_base or n) < 2 or not self._spread():
            return math.nan
        scale = math.sqrt(sum(s * s for s in self.sds) / min(n, n_base or n))
        high = scale * (stats.t.ppf(1 - alpha / 2, 1) + 4)
        while self.power(high, n, alpha, n_base) < power:
            high *= 2
        return float(optimize.brentq(lambda d: self.power(d, n, alpha, n_base) - power, 0.0, high,
                                     xtol=scale * 1e-9))

    def _spread(self) -> bool:
        """A finite, non-zero noise to plan from (an arm equal to the baseline on every seed has none)."""
        return all(math.isfinite(s) for s in self.sds) and any(s > 0 for s in self.sds)
