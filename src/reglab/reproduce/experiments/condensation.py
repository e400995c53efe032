"""`condensation`: dropout condenses tanh networks on a 1-D target (Zhang & Xu 2022, condensation experiment).

Target tanh(x − 6) + tanh(x + 6) on 20 grid points of [−10, 10]; 2- and 3-layer tanh networks, dropout
after every hidden layer, initialised in the linear regime (every weight and bias N(0, 1/fan_in)).
Shown per depth and dropout rate: loss curves, fitted outputs, and each first-layer neuron's
(orientation, amplitude) at initialisation and after training. The source: with dropout the neurons
gather at a few orientations; we count them with the effective ratio of the first hidden layer.
"""

from __future__ import annotations

import numpy as np
import torch

from reglab.reproduce.common import make_trainer, new_figure, orientation_number, sci
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.theory import effective_ratio, neuron_features

FULL = {"width": 1000, "depths": [2, 3], "rates": [0.0, 0.1, 0.3], "epochs": 5000, "lr": 5e-3,
        "threshold": 0.99}
QUICK = {"width": 100, "depths": [2, 3], "rates": [0.0, 0.3], "epochs": 600, "lr": 5e-3,
         "threshold": 0.99}


def config(s: dict, depth: int, p: float) -> dict:
    return {"data": {"name": "fn1d", "options": {"target": "tanh2"}},
            "model": {"name": "mlp", "options": {"widths": [s["width"]] * (depth - 1), "activation": "tanh",
                                                  "init": "normal", "init_gamma": 0.5}},
            "optim": {"name": "adam", "lr": s["lr"]}, "regularize": {"dropout": {"p": p}},
            "train": {"epochs": s["epochs"], "batch_size": 0, "loss": "mse"}}


def _features(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(angle, amplitude) of the first hidden layer's neurons; amplitude uses the next Linear layer."""
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    f = neuron_features(linears[0], linears[1])
    return f.angle.cpu(), f.amplitude.cpu()


@preset("condensation")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    figures, numbers, claims = {}, {}, []
    for depth in s["depths"]:
        fig, (ax_loss, ax_fit, ax_init, *ax_ends) = new_figure(3 + len(s["rates"]), width=3.6, height=3.2)
        numbers[f"{depth}-layer"] = results = {}
        for p, ax_end in zip(s["rates"], ax_ends, strict=True):
            trainer = make_trainer(config(s, depth, p), settings)
            init_angle, init_amp = _features(trainer.model)
            result = trainer.fit()
            angle, amp = _features(trainer.model)
            label = f"p={p}"
            results[label] = {"effective_ratio": effective_ratio(trainer.model[0], s["threshold"]),
                              "orientations": orientation_number(angle, amp),
                              "train_loss": result.final["train_eval_loss"], "test_loss": result.final["test_loss"]}
            ax_loss.plot([e["train_loss"] for e in result.epochs], label=label)
            data = trainer.data
            with torch.no_grad():
                trainer.model.eval()
                fitted = trainer.model(data.x_test).squeeze(1).cpu().numpy()
            line = ax_fit.plot(data.x_test.squeeze(1).cpu().numpy(), fitted, label=label)[0]
            if p == s["rates"][0]:
                ax_init.scatter(init_angle, init_amp, s=4, color="gray")
            ax_end.scatter(angle, amp, s=4, color=line.get_color())
            ax_end.set_title(f"first layer after training, {label}")
        ax_fit.scatter(data.x_train.squeeze(1).cpu().numpy(), data.y_train.squeeze(1).cpu().numpy(), c="k", s=10,
                       zorder=3, label="training points")
        ax_loss.set(yscale="log", xlabel="epoch (full batch)", ylabel="training loss (with dropout noise)",
                    title=f"{depth}-layer tanh net, width {s['width']}")
        ax_fit.set(xlabel="x", ylabel="f(x)", title="fitted outputs")
        ax_init.set_title("first layer at initialisation")
        for ax in (ax_init, *ax_ends):
            ax.set(xlabel="orientation θ = atan2(b, w)", ylabel="amplitude |a|·‖(w, b)‖", xlim=(-np.pi, np.pi))
        for ax in (ax_loss, ax_fit):
            ax.legend(fontsize=7)
        figures[f"condensation_{depth}layer"] = fig
        for key, what in (("effective_ratio", "effective ratio"), ("orientations", "amplitude-weighted orientations")):
            plain = results[f"p={s['rates'][0]}"][key]
            dropped = {k: v[key] for k, v in results.items() if k != f"p={s['rates'][0]}"}
            claims.append(Claim(f"{depth}-layer: dropout condenses the first-layer neurons (lower {what})",
                                f"{sci(plain)} without; " + ", ".join(f"{sci(v)} at {k}" for k, v in dropped.items()),
                                all(v < plain for v in dropped.values())))
    return Outcome(figures=figures, numbers=numbers, claims=claims, settings=s, notes=[
        "Adam, full batch, loss ½‖f − y‖²; effective ratio of the first hidden layer: greedy set cover at cosine "
        f"> {s['threshold']} of the (w, b) input weights (reglab.theory): with 2-D input weights, 0.95 would "
        "merge orientations 18° apart. It counts every neuron, however small its amplitude; the amplitude-weighted "
        "number of orientations, exp(entropy) of the amplitude histogram of θ over 72 bins of 5°, counts the "
        "orientations that carry the output (reglab.reproduce.common.orientation_number).",
        "The training-loss curve is the loss the optimiser saw, i.e. with dropout noise when p > 0."])
