"""`l1-l4`: which part of dropout helps — its explicit term R1 or its implicit term R2 (Zhang & Xu 2022).

The 784-1000-10 ReLU network (loss ½‖f − y‖²) on the first 1000 MNIST images, trained by SGD with
R_S, R_drop and the four disentangling objectives (reglab.theory.dropout): L1 = R_S + R1,
L2 = R_S + R2, L3 = R_drop − R2, L4 = R_drop − R1, over dropout rates at learning rates 0.05 and
0.005. The source's conclusion (its abstract): the implicit regularization R2 is key. Checked here, as
mean test accuracy over rates and learning rates: adding R2 helps (L2 above R_S) and cancelling it
hurts (L3 below R_drop).
"""

from __future__ import annotations

import numpy as np

from reglab.reproduce.common import fit, mnist_1000, mnist_mlp, new_figure, pct
from reglab.reproduce.framework import Claim, Outcome, Settings, preset

FULL = {"rates": [0.1, 0.3, 0.5, 0.7], "lrs": [0.05, 0.005], "epochs": 100, "train_subset": 1000}
QUICK = {"rates": [0.5], "lrs": [0.05, 0.005], "epochs": 1, "train_subset": 200}
OBJECTIVES = {"rs": "R_S", "drop": "R_drop", "rs+r1": "L1 = R_S + R1", "rs+r2": "L2 = R_S + R2",
              "drop-r2": "L3 = R_drop − R2", "drop-r1": "L4 = R_drop − R1"}


@preset("l1-l4")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    data, data_note = mnist_1000(settings)
    data = {**data, "train_subset": s["train_subset"]}
    acc: dict[str, dict[str, dict[str, float]]] = {}
    fig, axes = new_figure(len(s["lrs"]))
    for ax, lr in zip(axes, s["lrs"], strict=True):
        acc[f"lr={lr}"] = table = {}
        for objective, label in OBJECTIVES.items():
            rates = [0.0] if objective == "rs" else s["rates"]
            table[objective] = {f"p={p}": fit(mnist_mlp(data, objective=objective, p=p, optimizer="sgd", lr=lr,
                                                        epochs=s["epochs"]), settings)[1].final["test_acc"]
                                for p in rates}
            if objective == "rs":
                ax.axhline(100 * table[objective]["p=0.0"], color="gray", ls=":", label=label)
            else:
                ax.plot(s["rates"], [100 * a for a in table[objective].values()], marker="o", label=label)
        ax.set(xlabel="dropout rate p", ylabel="test accuracy (%)", title=f"SGD lr {lr}")
        ax.legend(fontsize=7)

    mean = {o: float(np.mean([a for t in acc.values() for a in t[o].values()])) for o in OBJECTIVES}
    claims = [Claim("the implicit term R2 helps: L2 = R_S + R2 beats R_S",
                    f"mean test accuracy {pct(mean['rs+r2'])} (L2) vs {pct(mean['rs'])} (R_S)",
                    mean["rs+r2"] > mean["rs"]),
              Claim("cancelling R2 hurts: L3 = R_drop − R2 falls below R_drop",
                    f"mean test accuracy {pct(mean['drop-r2'])} (L3) vs {pct(mean['drop'])} (R_drop)",
                    mean["drop-r2"] < mean["drop"])]
    return Outcome(figures={"l1_l4": fig}, numbers={"test_acc": acc, "mean_test_acc": mean}, claims=claims,
                   settings=s, notes=[
        data_note + (f" Only the first {s['train_subset']} of them are used." if s["train_subset"] < 1000 else ""),
        "SGD with mini-batches of 100 (R2 is the backward-error term of one step with the current learning "
        "rate); ReLU MLP, PyTorch default init; accuracy at the last epoch."])
