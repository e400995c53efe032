"""`escape`: from a minimum of R_S, switching on dropout or R1 moves training to a condensed solution
(Zhang & Xu 2022, escape experiment).

A two-layer tanh network (linear-regime init) is trained with R_S alone on the 1-D target
tanh(x − 6) + tanh(x + 6) to a small loss, then training continues from that point with R_S (control),
with dropout, or with R_S + R1. Shown: R_S along the whole trajectory and each continuation's
first-layer (orientation, amplitude) scatter at the end; condensation is counted by the effective ratio.
"""

from __future__ import annotations

import numpy as np

from reglab.reproduce.common import make_trainer, new_figure, orientation_number, sci
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.theory import effective_ratio_greedy, neuron_features

FULL = {"width": 1000, "epochs_rs": 5000, "epochs_after": 5000, "lr": 5e-3, "p": 0.3, "threshold": 0.99}
QUICK = {"width": 100, "epochs_rs": 300, "epochs_after": 300, "lr": 5e-3, "p": 0.3, "threshold": 0.99}
CONTINUATIONS = {"rs": "R_S (control)", "drop": "dropout", "rs+r1": "R_S + R1"}


def config(s: dict, objective: str, epochs: int) -> dict:
    return {"data": {"name": "fn1d", "options": {"target": "tanh2"}},
            "model": {"name": "mlp", "options": {"widths": [s["width"]], "activation": "tanh",
                                                  "init": "normal", "init_gamma": 0.5}},
            "optim": {"name": "adam", "lr": s["lr"]}, "regularize": {"dropout": {"p": s["p"]}},
            "train": {"epochs": epochs, "batch_size": 0, "loss": "mse", "objective": objective}}


@preset("escape", title="Escape: dropout / R1 move a trained R_S solution to a condensed one",
        where="escape experiment (train with R_S, then switch to dropout or R_S + R1)")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    first = make_trainer(config(s, "rs", s["epochs_rs"]), settings)
    before = first.fit()
    start = {k: v.clone() for k, v in first.model.state_dict().items()}
    numbers = {"after R_S": {"R_S": before.final["train_eval_loss"],
                             "effective_ratio": effective_ratio_greedy(first.model[0], s["threshold"])}}
    fig, axes = new_figure(1 + len(CONTINUATIONS), width=3.8, height=3.2)
    ax_loss = axes[0]
    head = [e["train_eval_loss"] for e in before.epochs]
    ax_loss.plot(range(1, len(head) + 1), head, color="gray", label="R_S phase")
    for ax, (objective, label) in zip(axes[1:], CONTINUATIONS.items(), strict=True):
        trainer = make_trainer(config(s, objective, s["epochs_after"]), settings)
        trainer.model.load_state_dict(start)
        result = trainer.fit()
        tail = [e["train_eval_loss"] for e in result.epochs]
        ax_loss.plot(range(len(head) + 1, len(head) + len(tail) + 1), tail, label=label)
        f = neuron_features(trainer.model[0], trainer.model[-1])
        numbers[label] = {"R_S": tail[-1], "effective_ratio": effective_ratio_greedy(trainer.model[0], s["threshold"]),
                          "orientations": orientation_number(f.angle, f.amplitude)}
        ax.scatter(f.angle.cpu().numpy(), f.amplitude.cpu().numpy(), s=4)
        ax.set(xlim=(-np.pi, np.pi), xlabel="orientation θ = atan2(b, w)", ylabel="amplitude |a|·‖(w, b)‖",
               title=f"after {label}: eff. ratio {numbers[label]['effective_ratio']:.3f}")
    ax_loss.axvline(len(head), color="k", ls=":", lw=0.8)
    ax_loss.set(yscale="log", xlabel="epoch (full batch)", ylabel="R_S (no dropout)", title="training trajectory")
    ax_loss.legend(fontsize=7)
    control = numbers["R_S (control)"]
    claims = [Claim(f"after switching to {label}, training leaves the R_S solution for a condensed one ({what})",
                    f"{sci(numbers[label][key])} vs {sci(control[key])} when R_S continues",
                    numbers[label][key] < control[key])
              for label in ("dropout", "R_S + R1")
              for key, what in (("effective_ratio", "effective ratio"), ("orientations", "weighted orientations"))]
    return Outcome(figures={"escape": fig}, numbers=numbers, claims=claims, settings=s, notes=[
        "Every phase: full-batch Adam with a fresh optimiser state; loss ½‖f − y‖²; the plotted curve is R_S "
        "(evaluated without dropout) after each epoch.",
        f"Effective ratio: greedy set cover at cosine > {s['threshold']} of the first layer's (w, b), every neuron "
        "counted; weighted orientations: exp(entropy) of the amplitude histogram of θ over 72 bins "
        "(reglab.reproduce.common.orientation_number)."])
