"""`interpolation` (chapter fig. 1.11): R_S on the line between minima of L_i and L_j.

Setting (stated): 784-1000-10 FNN on the first 1000 MNIST images (the fig. 1.10 setting,
reglab.reproduce.disentangle); for a pair L_i & L_j both minima start from the same initialisation,
θ(α) = (1 − α)θ_i + αθ_j, L_i's minimum at α = 0; one curve per dropout rate. Panels: (a) L1 & L3
(both keep R1), (b) L2 & L4 (both keep R̃2), (c–f) an R1-trained minimum (L1 or L3) at α = 0 against
an R̃2-trained one (L2 or L4) at α = 1. The chapter: (a, b) the loss stays near zero along the line;
(c–f) the R1-trained minima are flatter than the R̃2-trained ones.

Chosen where the chapter is silent (also in results.json "choices"): ε = 0.05, 1000 full-batch GD
steps, p ∈ {0.2, 0.5}, 3 seeds, α ∈ [−0.5, 1.5] in steps of 0.05, pixels in [0, 1]. ``--reduced``
(for a small CPU): p = 0.5 only and 300 steps. On a GPU: ``reglab reproduce interpolation --device cuda``.
Criteria, per seed averaged over
rates (and over the four pairs of c–f), then mean and 95% Student-t interval over seeds:

* "near zero along the line" (a, b): max_{α∈[0,1]} R_S(θ(α)) ≤ 10% of R_S at the initialisation;
* "R1 minima flatter" (c–f): the rise of R_S a quarter of the segment beyond each end,
  [R_S(θ(1.25)) − R_S(θ(1))] − [R_S(θ(−0.25)) − R_S(θ(0))], has its interval above 0.
"""

from __future__ import annotations

import numpy as np
import torch

from reglab.reproduce.common import half_mse, new_figure
from reglab.reproduce.disentangle import CHOICES, LABELS, fmt_ci, fnn, mnist_first_1000, paired_ci, train_gd
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.theory import interpolate

FULL = {"rates": [0.2, 0.5], "lr": 0.05, "steps": 1000, "seeds": [0, 1, 2], "train_subset": 1000, "per_unit": 20}
REDUCED = {**FULL, "rates": [0.5], "steps": 300}  # a 2-core CPU shared with other jobs
QUICK = {"rates": [0.5], "lr": 0.05, "steps": 3, "seeds": [0, 1, 2], "train_subset": 100, "per_unit": 4}
PAIRS = {"a": ("rs+r1", "drop-r2"), "b": ("rs+r2", "drop-r1"), "c": ("rs+r1", "rs+r2"), "d": ("rs+r1", "drop-r1"),
         "e": ("drop-r2", "rs+r2"), "f": ("drop-r2", "drop-r1")}
NEAR_ZERO = 0.10  # max R_S on the segment ≤ 10% of R_S at initialisation
STEP_OUT = 0.25  # flatness: rise of R_S this far beyond each end of the segment


def _short(objective: str) -> str:
    return LABELS[objective].split(" =")[0]


@preset("interpolation")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else REDUCED if settings.reduced else FULL
    data = mnist_first_1000(settings, s["train_subset"])
    n = s["per_unit"]  # α = k/n for k = −n/2 … 3n/2: 0, 1, −0.25 and 1.25 exactly on the grid
    alphas = torch.arange(-n // 2, 3 * n // 2 + 1, dtype=torch.float64) / n
    at = {a: int(torch.argmin((alphas - a).abs())) for a in (-STEP_OUT, -0.1, 0.0, 1.0, 1.1, 1.0 + STEP_OUT)}
    inside = (alphas >= 0) & (alphas <= 1)
    curves: dict[str, dict[str, dict[int, list[float]]]] = {k: {} for k in PAIRS}
    near_zero: dict[str, dict[int, list[float]]] = {"a": {}, "b": {}}
    ends: dict[str, dict[int, list[float]]] = {"a": {}, "b": {}}  # R_S at the two minima / R_S at init
    flatter: dict[int, list[float]] = {}
    by_panel: dict[str, list[float]] = {k: [] for k in "cdef"}
    closer: dict[int, list[float]] = {}  # the same difference 0.1 beyond each end
    for seed in s["seeds"]:
        with torch.no_grad():
            init_loss = half_mse(fnn(0.0, seed, data.x.device)(data.x), data.y).item()
        for p in s["rates"]:
            minima = {o: train_gd(o, p, s["lr"], s["steps"], seed, data)
                      for o in ("rs+r1", "rs+r2", "drop-r2", "drop-r1")}
            for panel, (i, j) in PAIRS.items():
                losses = interpolate(minima[i], minima[j], half_mse, data.x, data.y, alphas)["losses"]
                curves[panel].setdefault(f"p={p}", {})[seed] = losses.tolist()
                if panel in near_zero:
                    near_zero[panel].setdefault(seed, []).append(losses[inside].max().item() / init_loss)
                    ends[panel].setdefault(seed, []).append(max(losses[at[0.0]], losses[at[1.0]]).item() / init_loss)
                else:
                    rise_r1 = (losses[at[-STEP_OUT]] - losses[at[0.0]]).item()
                    rise_r2 = (losses[at[1.0 + STEP_OUT]] - losses[at[1.0]]).item()
                    flatter.setdefault(seed, []).append(rise_r2 - rise_r1)
                    by_panel[panel].append(rise_r2 - rise_r1)
                    closer.setdefault(seed, []).append((losses[at[1.1]] - losses[at[1.0]]
                                                        - losses[at[-0.1]] + losses[at[0.0]]).item())

    fig, axes = new_figure(6, width=3.0, height=2.8)
    for ax, (panel, (i, j)) in zip(axes, PAIRS.items(), strict=True):
        for p in s["rates"]:
            ax.plot(alphas, np.mean(list(curves[panel][f"p={p}"].values()), axis=0), label=f"p={p}")
        ax.set(xlabel="α", yscale="log", title=f"({panel}) {_short(i)} & {_short(j)}")
        ax.legend(fontsize=6)
    axes[0].set_ylabel("R_S(θ(α)), mean over seeds")

    ratio = {panel: paired_ci([float(np.mean(v)) for v in near_zero[panel].values()]) for panel in near_zero}
    diff = paired_ci([float(np.mean(v)) for v in flatter.values()])
    diff_closer = paired_ci([float(np.mean(v)) for v in closer.values()])
    end_ratio = {panel: float(np.mean([x for v in ends[panel].values() for x in v])) for panel in ends}
    checked_flat = ("per panel (mean over seeds and rates): " + ", ".join(
        f"({k}) {np.mean(v):+.3g}" for k, v in by_panel.items()) + f"; 0.1 beyond each end instead of "
        f"{STEP_OUT}: {fmt_ci(diff_closer)}")
    claims = [Claim(f"({panel}) {_short(PAIRS[panel][0])} & {_short(PAIRS[panel][1])}: R_S stays near zero along the "
                    "line between the minima", f"max R_S on the segment / R_S at init {fmt_ci(ratio[panel])}",
                    ratio[panel]["mean"] <= NEAR_ZERO, source="loss along the section stays near zero (figure only)",
                    checked=f"whether the minima themselves are near zero: max R_S of the two ends / R_S at init "
                    f"{end_ratio[panel]:.3g}",
                    criterion=f"mean over seeds of max_(α∈[0,1]) R_S(θ(α)) / R_S(θ_init) ≤ {NEAR_ZERO}")
              for panel in ("a", "b")]
    claims.append(Claim("(c–f) minima trained with R1 (L1, L3) are flatter than those trained with R̃2 (L2, L4)",
                        f"rise beyond the R̃2 end − rise beyond the R1 end {fmt_ci(diff)}", diff["ci_low"] > 0,
                        checked=checked_flat,
                        source="R1-trained minima show greater flatness than R̃2-trained minima (figure only)",
                        criterion=f"95% CI over seeds of [R_S(θ(1+{STEP_OUT})) − R_S(θ(1))] − "
                                  f"[R_S(θ(−{STEP_OUT})) − R_S(θ(0))] above 0, averaged over rates and panels c–f"))
    reduced = "p = 0.5 only, 300 GD steps (full: p ∈ {0.2, 0.5}, 1000 steps)" if settings.reduced else None
    return Outcome(figures={"interpolation": fig}, reduced=reduced,
                   numbers={"alphas": alphas, "pairs": {k: list(v) for k, v in PAIRS.items()},
                            "train_loss_per_seed": curves, "max_on_segment_over_init": ratio,
                            "flatness_difference": diff, "flatness_difference_at_0.1": diff_closer,
                            "flatness_difference_per_panel": by_panel, "ends_over_init": end_ratio},
                   claims=claims, settings=s, choices={
                       **CHOICES, "step size": "ε = 0.05 (the chapter does not say which of fig. 1.10's two)",
                       "steps": f"{s['steps']} full-batch GD steps", "dropout rates": f"p ∈ {s['rates']}",
                       "panels c–f": "the four R1-vs-R̃2 pairs L1&L2, L1&L4, L3&L2, L3&L4 (not named in the text)",
                       "seeds": "3 initialisations, each shared by the four objectives"},
                   notes=[data.note])
