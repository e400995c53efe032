"""`sample-size`: with dropout the student generalizes once n exceeds the teacher's 6 parameters
(source Fig. 1.7).

Source setting: teacher f(x) = tanh(x − 6) + tanh(x + 6), a two-layer tanh network with two neurons and
6 free parameters; student a two-layer tanh network of width 1000; Adam, learning rate 1e-4; mean test
error over 10 independent trials (random initialisations) per sample size and dropout rate. Source
claim: with dropout the model generalizes well once the number of samples exceeds 6, without dropout
it generalizes badly.

Choices where the source is silent (also in results.json "choices"): training inputs x ~ U[−10, 10]
drawn per trial; test error ½(f − y)² averaged over 401 grid points of [−10, 10]; n ∈ {2, 4, 6, 8, 10,
14, 20}; drop rates 0.1 and 0.3 against 0; every weight and bias N(0, m^−0.2) (the chapter's
linear-regime init of Fig. 1.8); full batch, 50,000 steps. "Generalizes well": mean test error below
0.01 (the target's ½-variance on [−10, 10] is ≈ 0.70, so 0.01 is about 1.4% of it).
"""

from __future__ import annotations

import numpy as np
import torch

from reglab.reproduce.common import new_figure
from reglab.reproduce.condensed import fmt, summary
from reglab.reproduce.experiments.condensation import target
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.reproduce.stacked import init_nets, risk, train

FULL = {"sizes": [2, 4, 6, 8, 10, 14, 20], "rates": [0.0, 0.1, 0.3], "trials": 10, "width": 1000,
        "steps": 50000, "lr": 1e-4}
QUICK = {"sizes": [4, 10], "rates": [0.0, 0.3], "trials": 3, "width": 50, "steps": 200, "lr": 1e-3}
GOOD = 0.01  # mean test error below which a setting "generalizes well"
CHOICES = {
    "output layer": "weights only, no bias: f = Σ_j a_j σ(w_j·x + b_j), the chapter's model (§1.4)",
    "data": "training inputs x ~ U[−10, 10], drawn per trial; test: 401 grid points of [−10, 10]",
    "sample sizes": "n ∈ {2, 4, 6, 8, 10, 14, 20}",
    "dropout rates": "drop probability 0.1 and 0.3 against 0",
    "initialisation": "every weight and bias N(0, m^−0.2) (the chapter's linear-regime init of Fig. 1.8)",
    "training": "full batch, 50,000 Adam steps at the source's lr 1e-4",
    "generalizes well": f"mean test error ½(f − y)² below {GOOD} (≈ 1.4% of the target's ½-variance, 0.70)",
}


@preset("sample-size")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    cells = [(n, p, trial) for n in s["sizes"] for p in s["rates"] for trial in range(s["trials"])]
    n_max = max(s["sizes"])
    x = torch.zeros(len(cells), n_max, 1)
    weight = torch.zeros(len(cells), n_max)
    for t, (n, _, trial) in enumerate(cells):  # trial k draws the same inputs at every rate
        g = torch.Generator().manual_seed(1000 * n + trial)
        x[t, :n, 0] = torch.rand(n, generator=g) * 20 - 10
        weight[t, :n] = 1
    x, weight = x.to(settings.device), weight.to(settings.device)
    nets = init_nets([1, s["width"], 1], [s["width"] ** -0.1] * 2, [p for _, p, _ in cells], activation="tanh",
                     seeds=[trial for _, _, trial in cells], device=settings.device)
    train(nets, "drop", x, target(x), weight=weight, steps=s["steps"], lr=s["lr"], record_every=s["steps"])
    grid = torch.linspace(-10, 10, 401, device=settings.device).unsqueeze(1)
    with torch.no_grad():
        test = risk(nets, grid, target(grid)).tolist()
        train_rs = risk(nets, x, target(x), weight).tolist()
    errors = {f"p={p}": {str(n): summary([test[t] for t, c in enumerate(cells) if c[:2] == (n, p)])
                         for n in s["sizes"]} for p in s["rates"]}
    train_errors = {f"p={p}": {str(n): summary([train_rs[t] for t, c in enumerate(cells) if c[:2] == (n, p)])
                               for n in s["sizes"]} for p in s["rates"]}

    fig, (ax_map, ax_curves) = new_figure(2, width=4.6, height=3.6)
    grid_means = np.array([[errors[f"p={p}"][str(n)]["mean"] for n in s["sizes"]] for p in s["rates"]])
    image = ax_map.imshow(np.log10(grid_means), aspect="auto", origin="lower", cmap="viridis")
    ax_map.set(xticks=range(len(s["sizes"])), xticklabels=s["sizes"], yticks=range(len(s["rates"])),
               yticklabels=s["rates"], xlabel="number of samples n", ylabel="drop probability",
               title=f"log10 mean test error ({s['trials']} trials)")
    fig.colorbar(image, ax=ax_map)
    for p in s["rates"]:
        e = [errors[f"p={p}"][str(n)] for n in s["sizes"]]
        ax_curves.errorbar(s["sizes"], [v["mean"] for v in e], yerr=[np.nan_to_num(v["ci95"]) for v in e],
                           marker="o", capsize=3, label=f"p={p}")
    ax_curves.axhline(GOOD, color="gray", ls=":", lw=0.8)
    ax_curves.axvline(6, color="k", ls=":", lw=0.8)
    ax_curves.set(yscale="log", xlabel="number of samples n", ylabel="test error ½(f − y)²",
                  title="mean ± 95% CI")
    ax_curves.legend(fontsize=8)

    above = [n for n in s["sizes"] if n > 6]
    plain, train_plain = errors[f"p={s['rates'][0]}"], train_errors[f"p={s['rates'][0]}"]
    dropped = {k: v for k, v in errors.items() if k != f"p={s['rates'][0]}"}
    drop_good = all(v[str(n)]["mean"] < GOOD for v in dropped.values() for n in above)
    plain_bad = all(plain[str(n)]["mean"] >= GOOD for n in above)

    def row(e: dict) -> str:
        return ", ".join(f"n={n}: {fmt(e[str(n)])}" for n in above)

    claims = [
        Claim("with dropout the student generalizes well once n > 6",
              "; ".join(f"{k}: {row(v)}" for k, v in dropped.items()), drop_good,
              source="low test error for every dropout rate once n > 6 (the teacher's 6 free parameters)",
              criterion=f"mean test error < {GOOD} at every dropout rate and every n > 6 ({s['trials']} trials)",
              checked="final training error with dropout: " + "; ".join(
                  f"{k}: " + ", ".join(f"n={n}: {fmt(train_errors[k][str(n)])}" for n in above) for k in dropped)),
        Claim("without dropout the student generalizes badly", f"p=0: {row(plain)}", plain_bad,
              source="high test error without dropout", criterion=f"mean test error ≥ {GOOD} at every n > 6",
              checked="final training error without dropout: " + ", ".join(
                  f"n={n}: {fmt(train_plain[str(n)])}" for n in above)),
    ]
    return Outcome(figures={"sample_size": fig}, numbers={"test_error": errors, "train_R_S": train_errors},
                   claims=claims, settings=s, choices=CHOICES, notes=[
        "Every (n, rate, trial) is one net; all are trained stacked (reglab.reproduce.stacked), samples padded to "
        "the largest n with zero weight, which leaves each net's loss and gradient its own. Trial k uses the same "
        "inputs and the same initialisation at every dropout rate.",
        "Test error: ½(f − y)² averaged over 401 grid points of [−10, 10], without dropout."])
