"""`sample-size`: test error against the number of samples, with and without dropout (Zhang & Xu 2022).

A two-neuron tanh teacher on 10-D Gaussian inputs, fitted by a width-1000 two-layer tanh student with
Adam (lr 1e-4), for several training-set sizes n and dropout rates, several trials each (a trial
draws new inputs and a new student initialisation; the teacher is fixed). The source: with dropout
the student, condensed on few directions, needs fewer samples to reach a small test error.
"""

from __future__ import annotations

import numpy as np
import torch

from reglab.config import DataConfig
from reglab.data import load_dataset
from reglab.reproduce.common import fit, half_mse, new_figure, sci
from reglab.reproduce.framework import Claim, Outcome, Settings, preset

FULL = {"sizes": [20, 50, 100, 200], "rates": [0.0, 0.1, 0.3], "trials": 10, "width": 1000, "epochs": 5000,
        "lr": 1e-4}
QUICK = {"sizes": [10, 40], "rates": [0.0, 0.3], "trials": 2, "width": 100, "epochs": 200, "lr": 1e-3}
TEST_SAMPLES = 2000
MONITOR_SAMPLES = 100  # test samples evaluated every epoch; the reported error uses TEST_SAMPLES


def data_options(n: int, n_test: int, trial: int) -> dict:
    return {"d": 10, "m": 2, "n_train": n, "n_test": n_test, "seed": trial}


def config(s: dict, n: int, p: float, trial: int) -> dict:
    return {"seed": trial,
            "data": {"name": "teacher-student", "options": data_options(n, MONITOR_SAMPLES, trial)},
            "model": {"name": "mlp", "options": {"widths": [s["width"]], "activation": "tanh",
                                                  "init": "normal", "init_gamma": 0.5}},
            "optim": {"name": "adam", "lr": s["lr"]}, "regularize": {"dropout": {"p": p}},
            "train": {"epochs": s["epochs"], "batch_size": 0, "loss": "mse", "eval_train_samples": 0}}


def trial_error(s: dict, n: int, p: float, trial: int, settings: Settings) -> float:
    """½‖f − y‖² on TEST_SAMPLES fresh inputs after training (the training inputs come first, so they match)."""
    trainer, _ = fit(config(s, n, p, trial), settings)
    data = load_dataset(DataConfig(name="teacher-student", options=data_options(n, TEST_SAMPLES, trial)),
                        device=trainer.device)
    with torch.no_grad():
        return half_mse(trainer.model.eval()(data.x_test), data.y_test).item()


@preset("sample-size")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    errors = {f"p={p}": {str(n): [trial_error(s, n, p, t, settings) for t in range(s["trials"])]
                         for n in s["sizes"]} for p in s["rates"]}
    fig, (ax,) = new_figure(1, width=5.0, height=3.8)
    for label, by_n in errors.items():
        runs = np.array(list(by_n.values()))
        ax.errorbar(s["sizes"], runs.mean(1), yerr=runs.std(1), marker="o", capsize=3, label=label)
    ax.set(xscale="log", yscale="log", xlabel="number of training samples n", ylabel="test error ½‖f − y‖²",
           title=f"mean ± std over {s['trials']} trials")
    ax.set_xticks(s["sizes"], [str(n) for n in s["sizes"]], minor=False)
    ax.xaxis.set_minor_formatter("")
    ax.legend()

    small = s["sizes"][: max(1, len(s["sizes"]) // 2)]
    plain = float(np.mean([errors[f"p={s['rates'][0]}"][str(n)] for n in small]))
    dropped = {k: float(np.mean([v[str(n)] for n in small])) for k, v in errors.items() if k != f"p={s['rates'][0]}"}
    claim = Claim("dropout lowers the test error at small sample sizes (fewer samples needed)",
                  f"mean test error over n = {small}: {sci(plain)} without; "
                  + ", ".join(f"{sci(v)} at {k}" for k, v in dropped.items()),
                  all(v < plain for v in dropped.values()))
    return Outcome(figures={"sample_size": fig}, numbers={"test_error": errors}, claims=[claim], settings=s, notes=[
        "Student: N(0, 1/fan_in) init of every weight and bias, full-batch Adam, loss ½‖f − y‖²; test error on "
        f"{TEST_SAMPLES} fresh samples after the last epoch.",
        f"{s['trials']} trials per point (the source: 10), {s['epochs']} full-batch steps (this project's choice), "
        f"n ∈ {s['sizes']}, p ∈ {s['rates']}." if not settings.quick else "Quick: width 100, Adam lr 1e-3, 200 steps."])
