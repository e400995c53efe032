"""Number formatting shared by every report: accuracies in %, differences in percentage points (pp)."""

from __future__ import annotations

import math

from reglab.study.power import MAX_SEEDS
from reglab.study.stats import format_p


def is_acc(metric: str) -> bool:
    return metric.endswith("_acc") or metric == "gap_acc" or metric.startswith("spread_test_acc")


def is_score(metric: str) -> bool:
    """Scores in [0, 1] shown as fractions (F1, precision, recall): four decimals for means, spreads and
    differences alike."""
    return metric.endswith(("f1", "precision", "recall"))


def _ok(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def value(metric: str, x: float) -> str:
    if not _ok(x):
        return "—"
    return f"{100 * x:.2f}%" if is_acc(metric) else f"{x:.4f}" if is_score(metric) else f"{x:.4g}"


def spread(metric: str, x: float) -> str:
    if not _ok(x):
        return "—"
    return f"{100 * x:.2f}" if is_acc(metric) else f"{x:.4f}" if is_score(metric) else f"{x:.3g}"


def mean_std(metric: str, mean: float, std: float, n: int) -> str:
    """``71.30% ± 1.20 (n=3)``; the std is in the mean's unit (pp for accuracies)."""
    if not _ok(mean):
        return f"— (n={n})"
    return f"{value(metric, mean)} ± {spread(metric, std)} (n={n})"


def interval(metric: str, low: float, high: float) -> str:
    if not (_ok(low) and _ok(high)):
        return "—"
    return f"[{value(metric, low)}, {value(metric, high)}]"


def diff(metric: str, x: float) -> str:
    if not _ok(x):
        return "—"
    return f"{100 * x:+.2f} pp" if is_acc(metric) else f"{x:+.4f}" if is_score(metric) else f"{x:+.4g}"


def diff_interval(metric: str, low: float, high: float) -> str:
    if not (_ok(low) and _ok(high)):
        return "—"
    if is_acc(metric):
        return f"[{100 * low:+.2f}, {100 * high:+.2f}]"
    if is_score(metric):
        return f"[{low:+.4f}, {high:+.4f}]"
    return f"[{low:+.3g}, {high:+.3g}]"


def magnitude(metric: str, x: float) -> str:
    """A size of difference, unsigned: ``0.84 pp`` for accuracies."""
    if not _ok(x):
        return "—"
    return f"{100 * x:.2f} pp" if is_acc(metric) else f"{x:.4f}" if is_score(metric) else f"{x:.3g}"


def seeds(n: float) -> str:
    """Seeds per arm from `reglab.study.power.SeedNoise.seeds_needed`: a count, "> 10,000" or "—"."""
    if n == math.inf:
        return f"> {MAX_SEEDS:,}"
    return f"{int(n)}" if _ok(n) else "—"


def p_value(p: float) -> str:
    return format_p(p) if _ok(p) else "—"


def probability(p: float) -> str:
    return f"{p:.2f}" if _ok(p) else "—"


def probability_interval(low: float, high: float) -> str:
    return f"[{low:.2f}, {high:.2f}]" if _ok(low) and _ok(high) else "—"
