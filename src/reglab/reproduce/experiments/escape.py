"""`escape`: from an R_S minimum in the linear regime, dropout or R_S + R1 leave it for a condensed one
(source Fig. 1.6).

Source setting: a two-layer tanh network initialised in the linear regime is trained with R_S; once
R_S is small, training continues from that point with R_S^drop or with R_S + R1 (and, for reference,
with R_S). Source claim: dropout (its R1 term) helps training leave the R_S minimum of the linear
regime and find a condensed model.

Choices where the source is silent (also in results.json "choices"): the 1-D target of Figs. 1.2 and
1.7, tanh(x − 6) + tanh(x + 6), on 20 points evenly spaced on [−10, 10]; width 1000, every weight and
bias N(0, m^−0.2) (the chapter's linear-regime init of Fig. 1.8); Adam lr 1e-3 (the rate of Fig. 1.2,
the condensation experiment on the same target; Fig. 1.7's tanh networks use 1e-4), full batch, a
fresh optimiser state per phase; 10,000 R_S steps, then 20,000 steps of each continuation; drop rate
0.3 for R_drop and R1; 3 seeds.
"""

from __future__ import annotations

import torch

from reglab.reproduce.common import new_figure
from reglab.reproduce.condensed import FLOOR, below, condensation, features, fmt, summary, why_not_below
from reglab.reproduce.experiments.condensation import target
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.reproduce.stacked import forward, init_nets, train

FULL = {"width": 1000, "n_train": 20, "p": 0.3, "seeds": 3, "lr": 1e-3, "steps_rs": 10000, "steps_after": 20000}
QUICK = {"width": 50, "n_train": 20, "p": 0.3, "seeds": 2, "lr": 1e-3, "steps_rs": 100, "steps_after": 100}
CONTINUATIONS = {"rs": "R_S (reference)", "drop": "R_drop", "rs+r1": "R_S + R1"}
COLORS = {"rs": "tab:blue", "drop": "tab:orange", "rs+r1": "tab:green"}
CHOICES = {
    "non-zero neurons": "those whose amplitude, rescaled to max 1, is at least 0.1 (`FLOOR`; the source's "
                        "\"non-zero parameters\" gives no threshold)",
    "output layer": "weights only, no bias: f = Σ_j a_j σ(w_j·x + b_j), the chapter's model (§1.4)",
    "target and data": "tanh(x − 6) + tanh(x + 6) on 20 points evenly spaced on [−10, 10] (as Figs. 1.2, 1.7)",
    "network": "two-layer tanh, width 1000, every weight and bias N(0, m^−0.2) (linear regime, as Fig. 1.8)",
    "training": "Adam lr 1e-3, full batch; 10,000 R_S steps, then 20,000 steps of each continuation, a fresh "
                "Adam state at the switch",
    "dropout rate": "drop probability 0.3 for R_drop and for R1",
    "seeds": "3",
}


@preset("escape")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    seeds = list(range(s["seeds"]))
    nets = init_nets([1, s["width"], 1], [s["width"] ** -0.1] * 2, [s["p"]] * len(seeds), activation="tanh",
                     seeds=seeds, device=settings.device)
    x = torch.linspace(-10, 10, s["n_train"], device=settings.device).unsqueeze(1)
    grid = torch.linspace(-10, 10, 401, device=settings.device).unsqueeze(1)
    every = max(1, s["steps_rs"] // 100)
    head = train(nets, "rs", x, target(x), steps=s["steps_rs"], lr=s["lr"], record_every=every)
    start = nets.clone()
    tails, per_net = {}, {}
    for k, kind in enumerate(CONTINUATIONS):  # one stacked run of every seed per objective
        part = start.select(range(len(seeds)))
        tails[kind] = train(part, kind, x, target(x), steps=s["steps_after"], lr=s["lr"],
                            record_every=max(1, s["steps_after"] // 100), seed=k)
        per_net[kind] = (part, [condensation(part, t, start) for t in range(len(seeds))])
    numbers = {"after R_S phase": {"R_S": summary(head[-1]),
                                   "per_seed": [condensation(start, t) for t in range(len(seeds))]}}
    for kind, label in CONTINUATIONS.items():
        part, results = per_net[kind]
        numbers[label] = {"R_S": summary(tails[kind][-1]),
                          "nonzero_directions": summary([r["nonzero_directions"]["count"] for r in results]),
                          "relative_change_from_R_S_minimum": summary([r["relative_change"] for r in results]),
                          "count_methods": sorted({r[key]["method"] for r in results
                                                   for key in ("effective_ratio", "nonzero_directions")}),
                          "per_seed": results}
    numbers["after R_S phase"]["nonzero_directions"] = summary(
        [r["nonzero_directions"]["count"] for r in numbers["after R_S phase"]["per_seed"]])

    fig, (ax_loss, ax_fit, ax_scatter) = new_figure(3, width=4.0, height=3.3)
    n_head = s["steps_rs"]
    ax_loss.plot([min(i * every, n_head) for i in range(len(head))], [h[0] for h in head], color="tab:blue")
    for kind, label in CONTINUATIONS.items():
        part, _ = per_net[kind]
        tail_every = max(1, s["steps_after"] // 100)
        ax_loss.plot([n_head + min(i * tail_every, s["steps_after"]) for i in range(len(tails[kind]))],
                     [h[0] for h in tails[kind]], color=COLORS[kind], label=label)
        with torch.no_grad():
            ax_fit.plot(grid.squeeze(1).cpu(), forward(part, grid)[0][0].squeeze(-1).cpu(), color=COLORS[kind],
                        label=label)
        _, angle, amplitude = features(part, 0)
        ax_scatter.scatter(angle.numpy(), amplitude.numpy(), s=4, color=COLORS[kind], label=label)
    ax_loss.axvline(n_head, color="k", ls=":", lw=0.8)
    ax_loss.set(yscale="log", xlabel="step", ylabel="R_S (no dropout)", title="loss (seed 0)")
    ax_fit.scatter(x.squeeze(1).cpu(), target(x).squeeze(1).cpu(), c="k", s=10, zorder=3, label="data")
    ax_fit.set(xlabel="x", ylabel="f(x)", title="outputs (seed 0)")
    ax_scatter.set(xlim=(-torch.pi, torch.pi), ylim=(0, 1.05), xlabel="orientation of (w, b) [rad]",
                   ylabel="amplitude / max amplitude", title="neurons at the end (seed 0)")
    for ax in (ax_loss, ax_fit, ax_scatter):
        ax.legend(fontsize=7, markerscale=3)

    control = numbers["R_S (reference)"]["nonzero_directions"]
    claims = []
    for label in ("R_drop", "R_S + R1"):
        mine = numbers[label]["nonzero_directions"]
        moved = numbers[label]["relative_change_from_R_S_minimum"]
        claims.append(Claim(
            f"continuing with {label} leaves the R_S minimum for a condensed model",
            f"directions covering the neurons of amplitude ≥ {FLOOR}·max (cos > 0.95, exact cover): {fmt(mine)} vs "
            f"{fmt(control)} when R_S continues; ‖W − W_RS‖/‖W_RS‖ {fmt(moved)}"
            f" vs {fmt(numbers['R_S (reference)']['relative_change_from_R_S_minimum'])}",
            below(mine, control),
            source="orange (R_drop) and green (R_S + R1) condense, blue (R_S) does not",
            criterion="95% CI of the direction count after the switch entirely below that of the R_S continuation "
                      f"({s['seeds']} seeds)",
            checked=why_not_below(mine, control, "direction count")
            + f" Final R_S: {fmt(numbers[label]['R_S'])} vs {fmt(numbers['R_S (reference)']['R_S'])}."))
    return Outcome(figures={"escape": fig}, numbers=numbers, claims=claims, settings=s, choices=CHOICES, notes=[
        "Scatter as the source's: (orientation of (w, b), amplitude |a|·‖(w, b)‖) rescaled to max 1 per model; "
        "blue: R_S continued, orange: R_drop, green: R_S + R1.",
        "Direction counts: exact minimum cover at cos > 0.95 (MILP); 'count_methods' says if the greedy bound was "
        "used. Relative change: first-layer (w, b) against the R_S minimum where the switch happened."])
