"""`condensation`: dropout condenses tanh networks initialised in the linear regime (source Fig. 1.2).

Source setting: target f(x) = tanh(x − 6) + tanh(x + 6), tanh networks with 1000 neurons per hidden
layer, MSE, learning rate 1e-3, initialised in the linear regime (Luo et al. 2021, where without
dropout no condensation occurs); two-layer nets with dropout after the hidden layer, three-layer nets
with dropout after both hidden layers. Source claims: without dropout the trained first-layer weights
stay close to their initial values and the output oscillates more; with dropout the non-zero neurons
gather at a few discrete orientations.

Choices where the source is silent (also in results.json "choices"): Adam (the optimiser of the
chapter's other 1-D experiments); 20 training points evenly spaced on [−10, 10]; the linear-regime init
N(0, m^−0.2) of the chapter's Fig. 1.8 for every weight and bias of the input and output layers, and
N(0, 1/m) for the 1000×1000 layer of the three-layer net; drop rates 0.1 and 0.3 against 0; 3 seeds;
steps as in FULL. Criteria: see each claim. ``--reduced`` runs the two-layer nets only.
"""

from __future__ import annotations

import torch

from reglab.reproduce.common import new_figure
from reglab.reproduce.condensed import FLOOR, below, condensation, fmt, scatter, summary, why_not_below
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.reproduce.stacked import forward, init_nets, train

FULL = {"width": 1000, "depths": [2, 3], "rates": [0.0, 0.1, 0.3], "seeds": 3, "n_train": 20, "lr": 1e-3,
        "steps": {"2": 20000, "3": 5000}}
QUICK = {"width": 50, "depths": [2, 3], "rates": [0.0, 0.3], "seeds": 2, "n_train": 20, "lr": 1e-3,
         "steps": {"2": 200, "3": 50}}
CHOICES = {
    "non-zero neurons": "those whose amplitude, rescaled to max 1, is at least 0.1 (`FLOOR`; the source's "
                        "\"non-zero parameters\" gives no threshold)",
    "output layer": "weights only, no bias: f = Σ_j a_j σ(w_j·x + b_j), the chapter's model (§1.4)",
    "optimizer": "Adam, full batch (the source gives only the learning rate 1e-3)",
    "training data": "20 points evenly spaced on [−10, 10]",
    "initialisation": "N(0, m^−0.2) for every weight and bias of the input and output layers (the chapter's "
                      "linear-regime init of Fig. 1.8); N(0, 1/m) for the hidden-to-hidden layer of the 3-layer net",
    "dropout rates": "drop probability 0.1 and 0.3 against 0 (the source shows 'different rates', unnamed)",
    "steps": "20,000 full-batch steps (2-layer), 5,000 (3-layer)",
    "3-layer scatter": "the first hidden layer's neurons; the chapter defines the amplitude A = |a|·‖w‖ for a "
                       "two-layer net only, and a neuron's |a| is read here as the norm of its column in the next "
                       "1000 × 1000 layer",
    "seeds": "3 per setting; claims on mean ± 95% CI",
}


def target(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x - 6) + torch.tanh(x + 6)


def total_variation(y: torch.Tensor) -> torch.Tensor:
    """Σ |y_{i+1} − y_i| along the last grid axis: how much a fitted curve goes up and down."""
    return (y[..., 1:] - y[..., :-1]).abs().sum(-1)


def run_depth(s: dict, depth: int, device: str) -> tuple[dict, object]:
    m = s["width"]
    sizes = [1] + [m] * (depth - 1) + [1]
    stds = [m ** -0.1] + [m ** -0.5] * (depth - 2) + [m ** -0.1]
    rates = [p for p in s["rates"] for _ in range(s["seeds"])]
    seeds = [seed for _ in s["rates"] for seed in range(s["seeds"])]
    nets = init_nets(sizes, stds, rates, activation="tanh", seeds=seeds, device=device)
    initial = nets.clone()
    x = torch.linspace(-10, 10, s["n_train"], device=device).unsqueeze(1)
    grid = torch.linspace(-10, 10, 401, device=device).unsqueeze(1)
    steps = s["steps"][str(depth)]
    # ordinary dropout training: the "drop" objective with each net's own rate (rate 0: plain R_S)
    history = train(nets, "drop", x, target(x), steps=steps, lr=s["lr"], record_every=max(1, steps // 200))
    with torch.no_grad():
        fitted = forward(nets, grid)[0].squeeze(-1)
    per_net = [condensation(nets, t, initial) for t in range(nets.count)]
    results = {}
    for p in s["rates"]:
        idx = [t for t, r in enumerate(rates) if r == p]
        results[f"p={p}"] = {
            "train_R_S": summary([history[-1][t] for t in idx]),
            "relative_change": summary([per_net[t]["relative_change"] for t in idx]),
            "nonzero_directions": summary([per_net[t]["nonzero_directions"]["count"] for t in idx]),
            "effective_ratio_all_neurons": summary([per_net[t]["effective_ratio"]["ratio"] for t in idx]),
            "output_total_variation": summary(total_variation(fitted[idx]).tolist()),
            "count_methods": sorted({per_net[t][k]["method"] for t in idx
                                     for k in ("effective_ratio", "nonzero_directions")}),
            "per_seed": [per_net[t] for t in idx]}
    results["target_total_variation"] = float(total_variation(target(grid).squeeze(-1)))
    fig, axes = new_figure(2 + len(s["rates"]), width=3.5, height=3.1)
    steps_axis = [min(k * max(1, steps // 200), steps) for k in range(len(history))]
    for p in s["rates"]:
        t = rates.index(p)  # seed 0 of this rate
        axes[0].plot(steps_axis, [h[t] for h in history], label=f"p={p}")
        axes[1].plot(grid.squeeze(1).cpu(), fitted[t].cpu(), label=f"p={p}")
    for ax, p in zip(axes[2:], s["rates"], strict=True):
        scatter(ax, nets, rates.index(p), initial, f"{depth}-layer, p={p} (seed 0)")
    axes[0].set(yscale="log", xlabel="step", ylabel="R_S (no dropout)", title=f"{depth}-layer tanh, width {m}")
    axes[1].scatter(x.squeeze(1).cpu(), target(x).squeeze(1).cpu(), c="k", s=10, zorder=3, label="data")
    axes[1].set(xlabel="x", ylabel="f(x)", title="outputs (seed 0)")
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    return results, fig


def claims_for(depth: int, r: dict, rates: list[float], seeds: int) -> list[Claim]:
    plain = r[f"p={rates[0]}"]
    dropped = {k: v for k, v in r.items() if k.startswith("p=") and k != f"p={rates[0]}"}

    near = plain["relative_change"]["mean"] < 0.2
    fewer = all(below(v["nonzero_directions"], plain["nonzero_directions"]) for v in dropped.values())
    smoother = all(v["output_total_variation"]["mean"] < plain["output_total_variation"]["mean"]
                   for v in dropped.values())
    moved = all(v["relative_change"]["mean"] > plain["relative_change"]["mean"] for v in dropped.values())
    return [
        Claim(f"{depth}-layer: without dropout the trained weights stay close to their initial values",
              f"‖W − W₀‖/‖W₀‖ of the first layer: {fmt(plain['relative_change'])} without dropout; "
              + ", ".join(f"{fmt(v['relative_change'])} at {k}" for k, v in dropped.items()),
              near and moved, source="orange (trained) close to blue (initial) without dropout; far with dropout",
              criterion="mean relative change < 0.2 without dropout, and larger at every dropout rate",
              checked=f"no-dropout mean {plain['relative_change']['mean']:.3g}; "
              f"final training R_S without dropout {fmt(plain['train_R_S'])}"),
        Claim(f"{depth}-layer: with dropout the non-zero neurons condense on a few orientations",
              f"directions covering the neurons of amplitude ≥ {FLOOR}·max (cos > 0.95, exact cover): "
              f"{fmt(plain['nonzero_directions'])} without dropout; "
              + ", ".join(f"{fmt(v['nonzero_directions'])} at {k}" for k, v in dropped.items()),
              fewer, source="scatter: with dropout the non-zero parameters gather at a few discrete directions",
              criterion=f"95% CI of the count at every dropout rate entirely below the no-dropout CI ({seeds} seeds)",
              checked=" ".join(why_not_below(v["nonzero_directions"], plain["nonzero_directions"], k)
                               for k, v in dropped.items() if not below(v["nonzero_directions"],
                                                                        plain["nonzero_directions"]))),
        Claim(f"{depth}-layer: the output without dropout oscillates more than with dropout",
              f"total variation of f on [−10, 10]: {fmt(plain['output_total_variation'])} without; "
              + ", ".join(f"{fmt(v['output_total_variation'])} at {k}" for k, v in dropped.items())
              + f" (target {r['target_total_variation']:.3g})",
              smoother, source="Fig. 1.2 (b, g) vs (c, h): more oscillation without dropout",
              criterion="mean total variation lower at every dropout rate than without",
              checked="final training R_S: " + ", ".join(
                  f"{k} {fmt(v['train_R_S'])}" for k, v in r.items() if k.startswith("p="))),
    ]


@preset("condensation")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else {**FULL, "depths": [2]} if settings.reduced else FULL
    figures, numbers, claims = {}, {}, []
    for depth in s["depths"]:
        numbers[f"{depth}-layer"], figures[f"condensation_{depth}layer"] = run_depth(s, depth, settings.device)
        claims += claims_for(depth, numbers[f"{depth}-layer"], s["rates"], s["seeds"])
    reduced = None
    if settings.reduced and not settings.quick:
        reduced = ("two-layer nets only (the full setting of Fig. 1.2's top row); the three-layer nets of the bottom "
                   "row need about an hour on a 2-core CPU: run `reglab reproduce condensation` on a GPU")
    return Outcome(figures=figures, numbers=numbers, claims=claims, settings=s, choices=CHOICES, reduced=reduced,
                   notes=[
        "Training: the ordinary dropout loss (a fresh mask each step, inverted scaling) at each net's drop rate; "
        "the loss curve is R_S evaluated without dropout. Nets of all rates and seeds are trained stacked "
        "(reglab.reproduce.stacked), with the same arithmetic as separate runs.",
        "Scatter: as the source, each neuron's (orientation of (w, b), amplitude |a|·‖(w, b)‖), amplitudes "
        "rescaled so that each model's largest is 1; blue initial, orange final.",
        "Direction counts use the defined threshold cos > 0.95 and the exact minimum cover (MILP); a count that "
        "fell back to the greedy bound says so in 'count_methods'. The effective ratio of all 1000 neurons is "
        "reported, but with 1-D input (2-D (w, b)) about 10 directions cover any circle of neurons, so it is "
        "≈ 10/m with or without condensation and decides nothing; the non-zero neurons' count does."])
