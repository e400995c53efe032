"""`l1-l4` (chapter fig. 1.10): R1 carries dropout's benefit; R̃2 helps only slightly.

Setting (stated by the chapter): 784-1000-10 FNN, first 1000 MNIST images, full-batch gradient
descent at ε = 0.05 and ε = 0.005, trained with R_S, R_drop and L1–L4 of eq. (1.1) over dropout rates
(reglab.reproduce.disentangle). The chapter's reading of the figure: (a) L1 = R_S + R1 and
L3 = R_drop − R̃2 reach almost the test accuracy of dropout; (b) R̃2 (L2, and L4 = R_drop − R1)
improves on R_S only slightly compared with R1.

Chosen where the chapter is silent (also in results.json "choices"): dropout rates p ∈ {0.2, 0.5},
1000 GD steps at both step sizes, 3 seeds, PyTorch default initialisation shared by all objectives of
a seed, pixels in [0, 1]. ``--reduced`` (small CPU): ε = 0.05, p = 0.5 only, 300 steps. On a GPU:
``reglab reproduce l1-l4 --device cuda``.
Judged on test accuracy averaged over rates and step sizes, per seed, then mean and 95%
Student-t interval over seeds of the paired differences:

* "L1 (L3) reaches dropout": |mean(acc L1 − acc R_drop)| ≤ 1 point;
* "R1 carries the benefit": acc L1 − acc R_S has its interval above 0;
* "R̃2 helps only slightly": acc L1 − acc L2 has its interval above 0 (L2's gain is the smaller);
* "without R1 dropout loses its benefit": |mean(acc L4 − acc R_S)| ≤ 1 point (L4 near R_S, as L3
  near R_drop).
"""

from __future__ import annotations

import numpy as np

from reglab.reproduce.common import new_figure
from reglab.reproduce.disentangle import CHOICES, LABELS, evaluate, fmt_ci, mnist_first_1000, paired_ci, train_gd
from reglab.reproduce.framework import Claim, Outcome, Settings, preset

FULL = {"rates": [0.2, 0.5], "lrs": [0.05, 0.005], "steps": 1000, "seeds": [0, 1, 2], "train_subset": 1000,
        "test_subset": None}
REDUCED = {**FULL, "rates": [0.5], "lrs": [0.05], "steps": 300}  # a 2-core CPU shared with other jobs
QUICK = {"rates": [0.5], "lrs": [0.05, 0.005], "steps": 3, "seeds": [0, 1, 2], "train_subset": 100,
         "test_subset": 200}
TOLERANCE = 0.01  # "reaches dropout's accuracy": within 1 point


def _gain(acc: dict, a: str, b: str, seeds: list[int]) -> dict[str, float]:
    """Per seed: acc(a) − acc(b) averaged over every (lr, rate); mean and 95% CI over seeds."""
    return paired_ci([float(np.mean([acc[lr][a][rate][seed] - acc[lr][b][rate][seed]
                                     for lr in acc for rate in acc[lr][a]])) for seed in seeds])


@preset("l1-l4")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else REDUCED if settings.reduced else FULL
    data = mnist_first_1000(settings, s["train_subset"], s["test_subset"])
    acc: dict[str, dict[str, dict[str, dict[int, float]]]] = {}
    loss: dict[str, dict[str, dict[str, dict[int, float]]]] = {}  # final training loss R_S, dropout off
    for lr in s["lrs"]:
        acc[f"lr={lr}"] = table = {}
        loss[f"lr={lr}"] = losses = {}
        rs = {seed: evaluate(train_gd("rs", 0.0, lr, s["steps"], seed, data), data) for seed in s["seeds"]}
        table["rs"] = {f"p={p}": {k: v["test_acc"] for k, v in rs.items()} for p in s["rates"]}  # one run per seed
        losses["rs"] = {f"p={p}": {k: v["train_loss"] for k, v in rs.items()} for p in s["rates"]}
        for objective in list(LABELS)[1:]:
            runs = {f"p={p}": {seed: evaluate(train_gd(objective, p, lr, s["steps"], seed, data), data)
                               for seed in s["seeds"]} for p in s["rates"]}
            table[objective] = {r: {k: v["test_acc"] for k, v in t.items()} for r, t in runs.items()}
            losses[objective] = {r: {k: v["train_loss"] for k, v in t.items()} for r, t in runs.items()}
    fig, axes = new_figure(2, width=4.6)
    for ax, group in zip(axes, (("rs", "drop", "rs+r1", "drop-r2"), ("rs", "drop", "rs+r2", "drop-r1")),
                         strict=True):
        for objective in group:
            for lr, style in zip(s["lrs"], ("-", "--"), strict=False):
                means = [100 * np.mean(list(acc[f"lr={lr}"][objective][f"p={p}"].values())) for p in s["rates"]]
                ax.plot(s["rates"], means, style, marker="o", label=f"{LABELS[objective]}, ε={lr}",
                        color=f"C{list(LABELS).index(objective)}")
        ax.set(xlabel="dropout rate p", ylabel="test accuracy (%), mean over seeds")
        ax.legend(fontsize=6)
    axes[0].set_title("(a) R1: L1, L3")
    axes[1].set_title("(b) R̃2: L2, L4")

    gains = {f"{a} − {b}": _gain(acc, a, b, s["seeds"]) for a, b in
             (("rs+r1", "drop"), ("drop-r2", "drop"), ("rs+r1", "rs"), ("rs+r1", "rs+r2"), ("drop-r1", "rs"),
              ("drop", "rs"), ("rs+r2", "rs"))}
    pts = {"scale": 100, "unit": " pts"}

    def checked(a: str, b: str) -> str:
        """For a disagreement: the difference at each ε and the final training loss of both objectives."""
        def diff(lr: float) -> float:
            t = acc[f"lr={lr}"]
            return 100 * float(np.mean([t[a][r][k] - t[b][r][k] for r in t[a] for k in s["seeds"]]))

        def final_loss(lr: float, o: str) -> float:
            return float(np.mean([v for t in loss[f"lr={lr}"][o].values() for v in t.values()]))

        per_lr = "; ".join(f"ε={lr}: {diff(lr):+.2f} pts" for lr in s["lrs"])
        fit_ = "; ".join(f"ε={lr}: {LABELS[o].split(' =')[0]} {final_loss(lr, o):.3g}"
                         for lr in s["lrs"] for o in (a, b))
        return f"the difference per step size ({per_lr}) and the final training loss R_S of both ({fit_})"
    claims = [
        Claim("L1 = R_S + R1 reaches the test accuracy of dropout (fig. 1.10a)",
              f"acc L1 − acc R_drop {fmt_ci(gains['rs+r1 − drop'], **pts)}",
              abs(gains["rs+r1 − drop"]["mean"]) <= TOLERANCE, source="almost the same test accuracy as dropout",
              checked=checked("rs+r1", "drop"),
              criterion="|mean over seeds of acc(L1) − acc(R_drop)| ≤ 1 point (averaged over rates and ε)"),
        Claim("L3 = R_drop − R̃2 reaches the test accuracy of dropout (fig. 1.10a)",
              f"acc L3 − acc R_drop {fmt_ci(gains['drop-r2 − drop'], **pts)}",
              abs(gains["drop-r2 − drop"]["mean"]) <= TOLERANCE, source="almost the same test accuracy as dropout",
              checked=checked("drop-r2", "drop"),
              criterion="|mean over seeds of acc(L3) − acc(R_drop)| ≤ 1 point (averaged over rates and ε)"),
        Claim("R1 carries dropout's benefit: L1 beats R_S (fig. 1.10a)",
              f"acc L1 − acc R_S {fmt_ci(gains['rs+r1 − rs'], **pts)}", gains["rs+r1 − rs"]["ci_low"] > 0,
              checked=checked("rs+r1", "rs"),
              source="L1 at dropout's accuracy, above R_S",
              criterion="95% CI over seeds of acc(L1) − acc(R_S) above 0"),
        Claim("R̃2 helps only slightly compared with R1: L2 below L1 (fig. 1.10b)",
              f"acc L1 − acc L2 {fmt_ci(gains['rs+r1 − rs+r2'], **pts)}; L2 − R_S "
              f"{fmt_ci(gains['rs+r2 − rs'], **pts)}", gains["rs+r1 − rs+r2"]["ci_low"] > 0,
              checked=checked("rs+r1", "rs+r2"),
              source="R̃2 only slightly improves full-batch GD's generalization, compared with R1",
              criterion="95% CI over seeds of acc(L1) − acc(L2) above 0"),
        Claim("without R1, dropout keeps little of its benefit: L4 near R_S (fig. 1.10b)",
              f"acc L4 − acc R_S {fmt_ci(gains['drop-r1 − rs'], **pts)} vs acc R_drop − acc R_S "
              f"{fmt_ci(gains['drop − rs'], **pts)}",
              abs(gains["drop-r1 − rs"]["mean"]) <= TOLERANCE,
              checked=checked("drop-r1", "rs"),
              source="curves of L4 in fig. 1.10b close to R_S (figure only)",
              criterion="|mean over seeds of acc(L4) − acc(R_S)| ≤ 1 point (averaged over rates and ε), as for L3 "
                        "against R_drop; how much of dropout's own gain remains is shown beside it"),
    ]
    mean = {f"lr={lr}": {o: {p: float(np.mean(list(v.values()))) for p, v in t.items()}
                         for o, t in acc[f"lr={lr}"].items()} for lr in s["lrs"]}
    reduced = ("ε = 0.05 and p = 0.5 only, 300 GD steps (full: ε ∈ {0.05, 0.005}, p ∈ {0.2, 0.5}, 1000 steps)"
               if settings.reduced else None)
    return Outcome(figures={"l1_l4": fig}, reduced=reduced, numbers={
                       "test_acc_per_seed": acc, "test_acc_mean": mean, "paired_differences": gains,
                       "final_train_loss_per_seed": loss},
                   claims=claims, settings=s, choices={
                       **CHOICES, "dropout rates": f"p ∈ {s['rates']} (the chapter's rates are not stated)",
                       "steps": f"{s['steps']} full-batch GD steps at every ε (not stated; the same for each)",
                       "seeds": "3 initialisations, the same for every objective"},
                   notes=[data.note, "R_S is trained once per seed and ε (no dropout rate); it is drawn at "
                          "every rate for comparison."])
