"""`dropout-1d`: a wide ReLU network fitting a few 1-D points with and without dropout (Zhang & Xu 2022).

Two-layer ReLU network of width 1000, Adam lr 1e-3, full batch, loss ½‖f − y‖², on the five points
of `fn1d`'s ``relu-points`` target. Shown: the fitted curves and the training loss along
filter-normalized random directions through each solution (Li et al. 2018). The source: the solution
found with dropout is flatter. Flatness here: the mean loss increase L(θ + αd) − L(θ) over α ∈ [−1, 1],
averaged over several random directions.
"""

from __future__ import annotations

import numpy as np
import torch

from reglab.reproduce.common import fit, half_mse, new_figure, sci
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.theory import filter_normalized_direction, loss_along_direction

FULL = {"width": 1000, "epochs": 10000, "p": 0.2, "directions": 10}
QUICK = {"width": 200, "epochs": 1000, "p": 0.2, "directions": 5}
ALPHAS = torch.linspace(-1, 1, 41)


def config(s: dict, p: float) -> dict:
    return {"data": {"name": "fn1d", "options": {"target": "relu-points"}},
            "model": {"name": "mlp", "options": {"widths": [s["width"]], "activation": "relu"}},
            "optim": {"name": "adam", "lr": 1e-3}, "regularize": {"dropout": {"p": p}},
            "train": {"epochs": s["epochs"], "batch_size": 0, "loss": "mse"}}


@preset("dropout-1d")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    fig, (ax_fit, ax_slice) = new_figure(2)
    numbers = {}
    for label, p in (("without dropout", 0.0), (f"dropout p={s['p']}", s["p"])):
        trainer, result = fit(config(s, p), settings)
        model, data = trainer.model.eval(), trainer.data
        generator = torch.Generator().manual_seed(0)
        slices = torch.stack([loss_along_direction(model, filter_normalized_direction(model, generator), half_mse,
                                                   data.x_train, data.y_train, ALPHAS.to(data.x_train))
                              for _ in range(s["directions"])]).cpu()
        rise = (slices - slices[:, len(ALPHAS) // 2:len(ALPHAS) // 2 + 1]).mean().item()
        numbers[label] = {"train_loss": result.final["train_eval_loss"], "mean_loss_rise": rise,
                          "slice_mean": slices.mean(0)}
        with torch.no_grad():
            ax_fit.plot(data.x_test.squeeze(1).cpu(), model(data.x_test).squeeze(1).cpu(), label=label)
        ax_slice.plot(ALPHAS, slices.mean(0), label=label)
    ax_fit.scatter(data.x_train.squeeze(1).cpu(), data.y_train.squeeze(1).cpu(), c="k", zorder=3, label="points")
    ax_fit.set(xlabel="x", ylabel="f(x)", title="fitted curves")
    ax_slice.set(xlabel="α", ylabel="training loss L(θ + αd)", yscale="log",
                 title=f"mean over {s['directions']} filter-normalized directions")
    for ax in (ax_fit, ax_slice):
        ax.legend(fontsize=8)
    plain, drop = (numbers[k]["mean_loss_rise"] for k in numbers)
    claim = Claim("the solution found with dropout is flatter", f"mean loss rise over α ∈ [−1, 1]: {sci(plain)} "
                  f"without vs {sci(drop)} with dropout", bool(np.isfinite(drop)) and drop < plain)
    return Outcome(figures={"dropout_1d": fig}, numbers=numbers, claims=[claim], settings=s, notes=[
        "Data: fn1d relu-points (five points of a hat function on [−1, 1]); PyTorch default init.",
        "Directions: filter-normalized Gaussian directions (biases left at 0), the same generator seed for both "
        "solutions; the loss is evaluated without dropout."])
