"""`r1-mnist`: dropout vs its explicit regularizer R1 on 1000 MNIST images (Zhang & Xu 2022, R1 experiment).

A 784-1000-10 ReLU network with loss ½‖f − y‖² (one-hot y), trained with dropout (R_drop), with
R_S + R1 (dropout noise replaced by its expected effect) and with R_S alone, over dropout rates.
The source: dropout and R_S + R1 reach indistinguishable test accuracy, well above R_S alone
(~79% vs > 88%). Also checked: the lemma E_η R_drop = R_S + R1 at the trained weights.
"""

from __future__ import annotations

import torch

from reglab.reproduce.common import fit, mnist_1000, mnist_mlp, new_figure, pct, sci
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.theory import dropout_disabled, dropout_mode, dropout_r1

FULL = {"rates": [0.1, 0.3, 0.5, 0.7, 0.9], "epochs": 100, "lr": 5e-3, "batch_size": 100, "mask_draws": 50}
QUICK = {"rates": [0.5], "epochs": 2, "lr": 5e-3, "batch_size": 100, "mask_draws": 50}
OBJECTIVES = {"drop": "dropout", "rs+r1": "R_S + R1"}


def config(s: dict, data: dict, objective: str, p: float) -> dict:
    return mnist_mlp(data, objective=objective, p=p, optimizer="adam", lr=s["lr"], epochs=s["epochs"],
                     batch_size=s["batch_size"])


@torch.no_grad()
def terms(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, draws: int) -> dict[str, float]:
    """R_S, R1 and a Monte-Carlo mean of R_drop over `draws` mask draws, on (x, y)."""
    model.eval()
    with dropout_disabled(model):
        rs = loss_fn(model(x), y).item()
        r1 = dropout_r1(model, x).item()
    with dropout_mode(model, True):
        drop = sum(loss_fn(model(x), y).item() for _ in range(draws)) / draws
    return {"R_S": rs, "R1": r1, "E_R_drop": drop}


@preset("r1-mnist")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    data, data_note = mnist_1000(settings)
    _, plain = fit(config(s, data, "rs", 0.0), settings)
    numbers = {"R_S alone": {"test_acc": plain.final["test_acc"]}}
    for objective, label in OBJECTIVES.items():
        numbers[label] = {}
        for p in s["rates"]:
            trainer, result = fit(config(s, data, objective, p), settings)
            d = trainer.data
            numbers[label][f"p={p}"] = {"test_acc": result.final["test_acc"], **terms(
                trainer.model, trainer.eval_criterion, d.x_train, d.y_train, s["mask_draws"])}

    fig, (ax_acc, ax_terms) = new_figure(2)
    for label, marker in zip(OBJECTIVES.values(), "os", strict=True):
        runs = numbers[label]
        ax_acc.plot(s["rates"], [100 * r["test_acc"] for r in runs.values()], marker=marker, label=label)
        ax_terms.plot(s["rates"], [r["R_S"] for r in runs.values()], marker=marker, label=f"R_S ({label})")
        ax_terms.plot(s["rates"], [r["R1"] for r in runs.values()], marker=marker, ls="--", label=f"R1 ({label})")
    ax_acc.axhline(100 * plain.final["test_acc"], color="gray", ls=":", label="R_S alone")
    ax_acc.set(xlabel="dropout rate p", ylabel="test accuracy (%)", title="test accuracy")
    ax_terms.set(xlabel="dropout rate p", ylabel="value at the end of training", yscale="log",
                 title="R_S and R1 (training set)")
    ax_acc.legend(fontsize=8)
    ax_terms.legend(fontsize=7)

    drop, r1 = numbers["dropout"], numbers["R_S + R1"]
    gaps = [abs(drop[k]["test_acc"] - r1[k]["test_acc"]) for k in drop]
    best_drop, best_r1 = max(r["test_acc"] for r in drop.values()), max(r["test_acc"] for r in r1.values())
    lemma = max(abs(r["E_R_drop"] - r["R_S"] - r["R1"]) / r["E_R_drop"] for r in (*drop.values(), *r1.values()))
    rs_acc = plain.final["test_acc"]
    claims = [
        Claim("dropout and R_S + R1 reach indistinguishable test accuracy at every rate",
              f"largest gap {100 * max(gaps):.1f} points over p = {s['rates']}", max(gaps) <= 0.02),
        Claim("R_S alone ~79% test accuracy vs > 88% for dropout and R_S + R1",
              f"R_S {pct(rs_acc)}; best dropout {pct(best_drop)}, best R_S + R1 {pct(best_r1)}",
              min(best_drop, best_r1) > rs_acc),
        Claim("lemma: E_η R_drop = R_S + R1 (exact for ½‖f − y‖²)",
              f"largest relative gap {sci(lemma)} ({s['mask_draws']} mask draws)", lemma < 0.05),
    ]
    return Outcome(figures={"r1_mnist": fig}, numbers=numbers, claims=claims, settings=s, notes=[
        data_note,
        "ReLU MLP, PyTorch default init, Adam, mini-batches of 100, loss ½‖f − y‖² on one-hot labels; "
        "accuracy at the last epoch.",
        "'indistinguishable' is read as within 2 accuracy points; the second claim is judged by its direction "
        "(both above R_S alone), the source's levels are quoted for comparison."])
