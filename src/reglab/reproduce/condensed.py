"""What the condensation presets measure on stacked nets: features, direction counts, summaries, scatters.

* Scatter of (orientation, amplitude) per neuron as the source draws it: amplitude A_k = |a_k|·‖w_k‖,
  w_k = (w_k, b_k), rescaled so that each model's largest amplitude is 1; orientation the angle of
  w_k to the x axis in [−π, π) (1-D input).
* Direction counts at the defined threshold (cos > 0.95): the exact minimum cover
  (`reglab.theory.effective_ratio_exact`, HiGHS MILP under a time limit), the greedy upper bound only
  when the MILP does not finish — every count says which one it is.
* "Non-zero" neurons (the source: "the non-zero parameters gather at a few directions"): neurons whose
  rescaled amplitude is at least `FLOOR`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from reglab.reproduce.stacked import StackedNets, module
from reglab.study.stats import describe
from reglab.theory import CoverNotSolved, effective_ratio_exact, effective_ratio_greedy, neuron_features

THRESHOLD = 0.95  # Definition 1 of the source
FLOOR = 0.1  # rescaled amplitude from which a neuron counts as "non-zero"
TIME_LIMIT = 60.0  # seconds per exact cover


def features(nets: StackedNets, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First hidden layer of net t: input weights (m, d+1) incl. bias, angle (1-D input) and amplitude
    rescaled to max 1; the amplitude uses the next layer's outgoing weights."""
    net = module(nets, t)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    f = neuron_features(linears[0], linears[1])
    weights = torch.cat([linears[0].weight.detach(), linears[0].bias.detach()[:, None]], 1).cpu()
    angle = f.angle.cpu() if f.angle is not None else None
    return weights, angle, (f.amplitude / f.amplitude.max()).cpu()


def direction_count(weights: torch.Tensor, threshold: float = THRESHOLD) -> dict:
    """{"count", "ratio", "method", "greedy_count"}: the exact minimum cover, or the greedy bound when the
    exact one does not finish within TIME_LIMIT (then also "greedy_max_factor", the worst case
    r_greedy/r = H(s), s the largest set); the greedy count is always reported beside it."""
    m = len(weights)
    if m == 0:
        return {"count": 0, "ratio": 0.0, "method": "exact", "greedy_count": 0}
    greedy = round(effective_ratio_greedy(weights, threshold) * m)
    try:
        ratio = effective_ratio_exact(weights, threshold, time_limit=TIME_LIMIT)
        return {"count": round(ratio * m), "ratio": ratio, "method": "exact", "greedy_count": greedy}
    except CoverNotSolved:
        u = torch.nn.functional.normalize(weights.double(), dim=1)
        largest = int(((u @ u.T) > threshold).sum(1).max())
        return {"count": greedy, "ratio": greedy / m, "method": "greedy (exact MILP timed out)",
                "greedy_count": greedy, "greedy_max_factor": sum(1 / k for k in range(1, largest + 1))}


def condensation(nets: StackedNets, t: int, initial: StackedNets | None = None) -> dict:
    """Net t's first layer: effective ratio of all neurons, direction count of the non-zero ones, and
    (with `initial`) the relative change ‖W − W_0‖/‖W_0‖ of its input weights."""
    weights, _, amplitude = features(nets, t)
    result = {"effective_ratio": direction_count(weights),
              "nonzero_neurons": int((amplitude >= FLOOR).sum()),
              "nonzero_directions": direction_count(weights[amplitude >= FLOOR])}
    if initial is not None:
        w0, _, _ = features(initial, t)
        result["relative_change"] = float((weights - w0).norm() / w0.norm())
    return result


def summary(values: Sequence[float]) -> dict:
    """Mean, 95% Student-t interval of the mean and the values (reglab.study.stats.describe)."""
    s = describe(values)
    half = (s.ci_high - s.ci_low) / 2 if math.isfinite(s.ci_high) else math.nan
    return {"mean": s.mean, "ci95": half, "n": s.n, "values": [float(v) for v in values]}


def fmt(s: dict, digits: int = 3) -> str:
    return f"{s['mean']:.{digits}g} ± {s['ci95']:.{digits}g}" if math.isfinite(s["ci95"]) else f"{s['mean']:.{digits}g}"


def below(a: dict, b: dict) -> bool:
    """Summary a's 95% CI entirely below summary b's."""
    return a["mean"] + a["ci95"] < b["mean"] - b["ci95"]


def why_not_below(a: dict, b: dict, what: str) -> str:
    """For a failed `below(a, b)`: whether the means are at least ordered, and that the CIs overlap."""
    order = ("in the source's order" if a["mean"] < b["mean"] else "equal" if a["mean"] == b["mean"]
             else "in the opposite order")
    return (f"{what}: means {order} ({fmt(a)} vs {fmt(b)}), 95% CIs over {a['n']} seeds "
            f"{'overlap' if a['mean'] < b['mean'] else 'do not support the claim'}.")


def scatter(ax, nets: StackedNets, t: int, initial: StackedNets, title: str) -> None:
    """The source's scatter: initial (blue) and final (orange) neurons, amplitudes rescaled to max 1."""
    for which, color, label in ((initial, "tab:blue", "initial"), (nets, "tab:orange", "final")):
        _, angle, amplitude = features(which, t)
        ax.scatter(angle.numpy(), amplitude.numpy(), s=4, color=color, label=label)
    ax.set(xlim=(-math.pi, math.pi), ylim=(0, 1.05), xlabel="orientation of (w, b) [rad]",
           ylabel="amplitude / max amplitude", title=title)
    ax.legend(fontsize=7, markerscale=3)
