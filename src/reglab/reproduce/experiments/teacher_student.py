"""`teacher-student`: with dropout the student's neurons point in only two directions (source Fig. 1.3 a, b).

Source setting: the target is a two-layer tanh network with one hidden neuron and 10-D input; the
student is a two-layer tanh network; the similarity of two neurons is the cosine of their input
weights. Source claim: with dropout the student's neurons have only two directions (condensation);
without dropout they do not.

Choices where the source is silent (also in results.json "choices"): teacher f*(x) = tanh(w*·x) with
w* a fixed random unit vector; 100 training inputs x ~ N(0, I_10); student width 1000 with biases,
initialised in the linear regime N(0, m^−0.2) (the chapter's Fig. 1.8 init); Adam, lr 1e-3 (the
rate of Fig. 1.2's condensation experiments, which Fig. 1.3 continues; Fig. 1.7's tanh networks use
1e-4), full batch, 10,000 steps; drop rates 0.1 and 0.3 against 0; 3 seeds.
"""

from __future__ import annotations

import numpy as np
import torch

from reglab.reproduce.common import new_figure
from reglab.reproduce.condensed import FLOOR, condensation, features, fmt, summary
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.reproduce.stacked import init_nets, risk, train
from reglab.theory import cosine_similarity_matrix

FULL = {"width": 1000, "d": 10, "n_train": 100, "n_test": 2000, "rates": [0.0, 0.1, 0.3], "seeds": 3,
        "lr": 1e-3, "steps": 10000}
QUICK = {"width": 100, "d": 10, "n_train": 100, "n_test": 500, "rates": [0.0, 0.3], "seeds": 2,
         "lr": 1e-3, "steps": 300}
CHOICES = {
    "non-zero neurons": "those whose amplitude, rescaled to max 1, is at least 0.1 (`FLOOR`; the source's "
                        "\"non-zero parameters\" gives no threshold)",
    "output layer": "weights only, no bias: f = Σ_j a_j σ(w_j·x + b_j), the chapter's model (§1.4)",
    "teacher": "tanh(w*·x), w* a fixed random unit vector of R^10 (seed 1234), no bias",
    "data": "100 training and 2000 test inputs x ~ N(0, I_10)",
    "student": "width 1000, tanh, biases; every weight and bias N(0, m^−0.2) (linear regime, as Fig. 1.8)",
    "training": "Adam lr 1e-3, full batch, 10,000 steps, loss ½(f − y)²",
    "dropout rates": "drop probability 0.1 and 0.3 against 0",
    "seeds": "3 per setting (student init and data)",
}


def teacher_data(d: int, n: int, seed: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    w_star = torch.randn(d, generator=torch.Generator().manual_seed(1234))
    w_star = w_star / w_star.norm()
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return x.to(device), torch.tanh(x @ w_star).unsqueeze(1).to(device)


def _order(cos: np.ndarray) -> np.ndarray:
    """Neurons sorted by their cosine with the first principal direction (groups become blocks)."""
    _, _, vt = np.linalg.svd(cos)
    return np.argsort(cos @ vt[0])


@preset("teacher-student")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    rates = [p for p in s["rates"] for _ in range(s["seeds"])]
    seeds = [seed for _ in s["rates"] for seed in range(s["seeds"])]
    nets = init_nets([s["d"], s["width"], 1], [s["width"] ** -0.1] * 2, rates, activation="tanh", seeds=seeds,
                     device=settings.device)
    initial = nets.clone()
    data = [teacher_data(s["d"], s["n_train"] + s["n_test"], seed, settings.device) for seed in seeds]
    x = torch.stack([xs[: s["n_train"]] for xs, _ in data])
    y = torch.stack([ys[: s["n_train"]] for _, ys in data])
    train(nets, "drop", x, y, steps=s["steps"], lr=s["lr"], record_every=s["steps"])
    with torch.no_grad():
        test = risk(nets, torch.stack([xs[s["n_train"]:] for xs, _ in data]),
                    torch.stack([ys[s["n_train"]:] for _, ys in data])).tolist()
        train_rs = risk(nets, x, y).tolist()
    per_net = [condensation(nets, t, initial) for t in range(nets.count)]
    numbers = {}
    for p in s["rates"]:
        idx = [t for t, r in enumerate(rates) if r == p]
        numbers[f"p={p}"] = {
            "nonzero_directions": summary([per_net[t]["nonzero_directions"]["count"] for t in idx]),
            "effective_ratio_all_neurons": summary([per_net[t]["effective_ratio"]["ratio"] for t in idx]),
            "train_R_S": summary([train_rs[t] for t in idx]), "test_R_S": summary([test[t] for t in idx]),
            "relative_change": summary([per_net[t]["relative_change"] for t in idx]),
            "count_methods": sorted({per_net[t][k]["method"] for t in idx
                                     for k in ("effective_ratio", "nonzero_directions")}),
            "per_seed": [per_net[t] for t in idx]}

    fig, axes = new_figure(len(s["rates"]), width=4.2, height=3.6)
    for ax, p in zip(axes, s["rates"], strict=True):
        weights, _, amplitude = features(nets, rates.index(p))
        cos = cosine_similarity_matrix(weights).numpy()
        order = _order(cos)
        image = ax.imshow(cos[np.ix_(order, order)], vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        ax.set(title=f"p={p} (seed 0): {int((amplitude >= FLOOR).sum())} non-zero neurons", xlabel="neuron",
               ylabel="neuron")
    fig.colorbar(image, ax=axes, label="cosine similarity of input weights")

    plain = numbers[f"p={s['rates'][0]}"]
    dropped = {k: v for k, v in numbers.items() if k != f"p={s['rates'][0]}"}
    two = all(max(v["nonzero_directions"]["values"]) <= 2 for v in dropped.values())
    many = min(plain["nonzero_directions"]["values"]) > 2
    claim = Claim("with dropout the student's neurons point in only two directions; without dropout they do not",
                  f"directions covering the neurons of amplitude ≥ {FLOOR}·max (cos > 0.95, exact cover): "
                  f"{fmt(plain['nonzero_directions'])} without dropout; "
                  + ", ".join(f"{fmt(v['nonzero_directions'])} at {k}" for k, v in dropped.items()),
                  two and many, source="two directions with dropout (cosine-similarity matrix); no such structure "
                  "without", criterion=f"every seed at every dropout rate needs ≤ 2 directions to cover its neurons of "
                  f"rescaled amplitude ≥ {FLOOR}, and every seed without dropout needs > 2",
                  checked="How far training moved the first layer from its random init, "
                  "‖W − W₀‖/‖W₀‖: " + ", ".join(f"{k} {fmt(v['relative_change'])}" for k, v in numbers.items())
                  + "; training R_S " + ", ".join(f"{k} {fmt(v['train_R_S'])}" for k, v in numbers.items())
                  + "; test R_S " + ", ".join(f"{k} {fmt(v['test_R_S'])}" for k, v in numbers.items()) + ".")
    return Outcome(figures={"cosine_similarity": fig}, numbers=numbers, claims=[claim], settings=s, choices=CHOICES,
                   notes=[
        "Input weight of a neuron: (incoming weights, bias), 11-D. Direction counts: exact minimum cover at the "
        "defined threshold cos > 0.95 (MILP; 'count_methods' says if the greedy bound was used). The effective "
        "ratio of all neurons (small-amplitude ones included) is reported beside it.",
        "Training: the ordinary dropout loss at each net's drop rate, nets stacked (reglab.reproduce.stacked); "
        "test_R_S is ½(f − y)² on fresh inputs."])
