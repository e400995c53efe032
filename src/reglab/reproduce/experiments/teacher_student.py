"""`teacher-student`: cosine similarity of student neurons with and without dropout (Zhang & Xu 2022).

A one-neuron tanh teacher on 10-D Gaussian inputs, fitted by a wide two-layer tanh student. The source:
with dropout the student's input weights condense on few directions, so the effective ratio drops.
"""

from __future__ import annotations

import numpy as np

from reglab.reproduce.common import fit, new_figure, sci
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.theory import cosine_similarity_matrix, effective_ratio

FULL = {"width": 1000, "n_train": 200, "epochs": 10000, "lr": 1e-2, "p": 0.2}
QUICK = {"width": 100, "n_train": 100, "epochs": 1000, "lr": 1e-2, "p": 0.2}


def config(s: dict, p: float) -> dict:
    return {"data": {"name": "teacher-student", "options": {"d": 10, "m": 1, "n_train": s["n_train"],
                                                             "n_test": 1000}},
            "model": {"name": "mlp", "options": {"widths": [s["width"]], "activation": "tanh",
                                                  "init": "normal", "init_gamma": 0.5}},
            "optim": {"name": "adam", "lr": s["lr"]}, "regularize": {"dropout": {"p": p}},
            "train": {"epochs": s["epochs"], "batch_size": 0, "loss": "mse"}}


def _order(matrix: np.ndarray) -> np.ndarray:
    """Neurons sorted by their cosine with the first principal direction (groups become blocks)."""
    _, _, vt = np.linalg.svd(matrix)
    return np.argsort(matrix @ vt[0])


@preset("teacher-student")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    fig, axes = new_figure(2, width=4.4, height=3.8)
    numbers = {}
    for ax, (label, p) in zip(axes, (("without dropout", 0.0), (f"dropout p={s['p']}", s["p"])), strict=True):
        trainer, result = fit(config(s, p), settings)
        layer = trainer.model[0]
        cos = cosine_similarity_matrix(layer).cpu().numpy()
        numbers[label] = {"effective_ratio": effective_ratio(layer), "train_loss": result.final["train_eval_loss"],
                          "test_loss": result.final["test_loss"]}
        order = _order(cos)
        image = ax.imshow(cos[np.ix_(order, order)], vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        ax.set(title=f"{label}: effective ratio {numbers[label]['effective_ratio']:.3f}", xlabel="neuron",
               ylabel="neuron")
    fig.colorbar(image, ax=axes, label="cosine similarity")
    plain, drop = numbers["without dropout"], numbers[f"dropout p={s['p']}"]
    claim = Claim("dropout lowers the effective ratio of the hidden layer (condensed neurons)",
                  f"{sci(plain['effective_ratio'])} without vs {sci(drop['effective_ratio'])} with dropout",
                  drop["effective_ratio"] < plain["effective_ratio"])
    return Outcome(figures={"cosine_similarity": fig}, numbers=numbers, claims=[claim], settings=s, notes=[
        "Student: 2-layer tanh MLP, N(0, 1/fan_in) init of every weight and bias, Adam, full batch, "
        "loss ½‖f − y‖²; effective ratio: greedy set cover at cosine > 0.95 (reglab.theory), input weights "
        "including the bias.",
        "Neurons are ordered by their projection on the first singular direction of the cosine matrix."])
