"""`interpolation`: the loss on the line between minima found by different objectives (Zhang & Xu 2022).

From one initialisation, the 784-1000-10 network (loss ½‖f − y‖²) is trained on the first 1000 MNIST
images with R_S, R_drop and L1 = R_S + R1; the training loss and test accuracy are then evaluated on
θ(α) = (1 − α)θ_i + αθ_j for each pair (Goodfellow et al. 2015; reglab.theory.interpolate). The
barrier of a pair is max_{α∈[0,1]} L(θ(α)) − max(L(θ_i), L(θ_j)); the source draws these curves and
makes no numeric claim checked here.
"""

from __future__ import annotations

from itertools import combinations

import torch

from reglab.reproduce.common import fit, mnist_1000, mnist_mlp, new_figure, sci
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.theory import interpolate

FULL = {"p": 0.5, "epochs": 100, "lr": 5e-3, "train_subset": 1000, "test_subset": None, "per_unit": 20}
QUICK = {"p": 0.5, "epochs": 2, "lr": 5e-3, "train_subset": 200, "test_subset": 200, "per_unit": 8}
OBJECTIVES = {"rs": "R_S", "drop": "R_drop", "rs+r1": "L1 = R_S + R1"}


@preset("interpolation")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    data, data_note = mnist_1000(settings)
    data = {**data, "train_subset": s["train_subset"], "test_subset": s["test_subset"]}
    trained = {o: fit(mnist_mlp(data, objective=o, p=s["p"], optimizer="adam", lr=s["lr"], epochs=s["epochs"]),
                      settings)[0] for o in OBJECTIVES}
    n = s["per_unit"]  # α ∈ [−0.5, 1.5] in steps of 1/n, 0 and 1 exactly on the grid
    alphas = torch.arange(-n // 2, 3 * n // 2 + 1, dtype=torch.float64) / n
    fig, (ax_loss, ax_acc) = new_figure(2)
    numbers, claims = {}, []
    for a, b in combinations(OBJECTIVES, 2):
        ta, tb = trained[a], trained[b]
        d = ta.data
        line = interpolate(ta.model, tb.model, ta.eval_criterion, d.x_train, d.y_train, alphas)
        test = interpolate(ta.model, tb.model, ta.eval_criterion, d.x_test, d.y_test, line["alphas"])
        label = f"{OBJECTIVES[a]} → {OBJECTIVES[b]}"
        inside = (line["alphas"] >= 0) & (line["alphas"] <= 1)
        losses = line["losses"]
        barrier = (losses[inside].max() - max(losses[inside][0], losses[inside][-1])).item()
        numbers[label] = {"alphas": line["alphas"], "train_loss": losses, "test_acc": test["accs"],
                          "barrier": barrier}
        ax_loss.plot(line["alphas"], losses, label=label)
        ax_acc.plot(line["alphas"], 100 * test["accs"], label=label)
        claims.append(Claim(f"loss along the line {label} (curve only in the source)",
                            f"barrier {sci(barrier)} (training loss)", None))
    ax_loss.set(xlabel="α", ylabel="training loss ½‖f − y‖²", yscale="log", title="training loss on θ(α)")
    ax_acc.set(xlabel="α", ylabel="test accuracy (%)", title="test accuracy on θ(α)")
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=7)
    return Outcome(figures={"interpolation": fig}, numbers=numbers, claims=claims, settings=s, notes=[
        data_note + (f" Quick: only the first {s['train_subset']} of them, and {s['test_subset']} test images."
                     if settings.quick else ""),
        f"Adam lr {s['lr']}, mini-batches of 100, dropout p = {s['p']}, one shared initialisation (seed 0)."])
