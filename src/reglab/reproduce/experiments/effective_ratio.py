"""`effective-ratio`: a ResNet-18's Conv2-1 and Conv3-1 condense more with dropout (source Fig. 1.3 c).

Source setting: ResNet-18 classifies CIFAR-10 with and without dropout; with dropout, a dropout layer of
p = 0.5 follows the last activation of every block; Adam, learning rate 0.001, batch size 128, Kaiming
initialisation; tracked: the effective ratio (Definition 1, cos > 0.95) of Conv2-1 and Conv3-1, "the
first convolution of ResNet's second and third block". Source claim: with dropout the effective ratio
is lower (condensation).

Reading of "block": the chapter uses the same word (块) for where dropout goes, "after the last
activation of each block", i.e. each residual block; so Conv2-1 / Conv3-1 are the first convolutions of
the 2nd and 3rd residual blocks (`layer1.2.body.0`, `layer2.0.body.0` here). The other reading, He et
al.'s stages conv2_x / conv3_x, would be the 1st and 3rd residual blocks.

"Kaiming initialisation" is read as He et al.'s (2015): every convolution and linear weight
N(0, 2/fan_in) (`he_init`), biases 0 — not PyTorch's default, whose kaiming_uniform_ with a = √5 has a
std of 1/√(3·fan_in), 2.45× smaller. Choices where the source is silent (also in results.json
"choices"): 20 epochs, 3 seeds, BatchNorm as in ResNet-18. The effective ratio of each tracked
layer is computed every epoch both exactly (MILP, `effective_ratio_exact`, 60 s limit) and greedily.
CIFAR-10 must be present (``--data-dir`` or the usual folders); it is not available offline here.
"""

from __future__ import annotations

import torch
from torch import nn

from reglab.data import get_dataset_info
from reglab.regularize.stochastic_depth import Residual
from reglab.reproduce.common import make_trainer, new_figure
from reglab.reproduce.condensed import direction_count, fmt, summary
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.theory import effective_ratio_greedy, neuron_weights

TRACKED = {"Conv2-1": 2, "Conv3-1": 3}  # name in the source -> residual block (1-based)
FULL = {"epochs": 20, "seeds": 3, "width": 1.0, "train_subset": None, "test_subset": None}
QUICK = {"epochs": 2, "seeds": 1, "width": 0.125, "train_subset": 64, "test_subset": 64}
CHOICES = {
    "epochs": "20", "seeds": "3 per arm; claims on mean ± 95% CI at the last epoch",
    "initialisation": "the source's Kaiming initialisation read as He et al.'s N(0, 2/fan_in) for every conv and "
                      "linear weight, biases 0 (not PyTorch's default kaiming_uniform_, a = √5); BatchNorm weight 1, "
                      "bias 0",
    "tracked layers": "Conv2-1 / Conv3-1 read as the first conv of the 2nd / 3rd residual block",
    "network": "ResNet-18 in its CIFAR form (3×3 stem, no max-pool, projection shortcuts, BatchNorm; the "
               "source names only ResNet-18)",
    "training": "cross-entropy, constant learning rate, no weight decay; inputs standardised per channel, no "
                "augmentation (the source gives Adam, lr 0.001, batch 128 and nothing else)",
}


@torch.no_grad()
def he_init(model: nn.Module) -> None:
    """He et al. (2015) initialisation, in place: conv and linear weights N(0, 2/fan_in), their biases 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def first_convs(model: nn.Module) -> dict[str, str]:
    """Source name -> module name of the first convolution of the tracked residual blocks."""
    blocks = [name for name, m in model.named_modules() if isinstance(m, Residual)]
    return {label: f"{blocks[k - 1]}.body.0" for label, k in TRACKED.items()}


class RatioTracker:
    """Epoch callback: exact (or, past the time limit, greedy) and greedy effective ratio per tracked conv."""

    def __init__(self, layers: dict[str, str]):
        self.layers = layers
        self.history: list[dict] = []

    def __call__(self, epoch: int, model: nn.Module, metrics: dict | None = None) -> dict[str, float]:
        record: dict = {"epoch": epoch}
        for label, name in self.layers.items():
            weights = neuron_weights(model.get_submodule(name)).cpu()
            record[label] = {**direction_count(weights), "greedy": effective_ratio_greedy(weights)}
        self.history.append(record)
        return {f"effective_ratio/{label}": record[label]["ratio"] for label in self.layers}


@preset("effective-ratio")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    data = {"name": "cifar10", "train_subset": s["train_subset"], "test_subset": s["test_subset"]}
    arms = {"without dropout": 0.0, "dropout p=0.5": 0.5}
    histories: dict[str, list[list[dict]]] = {arm: [] for arm in arms}
    accuracy: dict[str, list[float]] = {arm: [] for arm in arms}
    for arm, p in arms.items():
        for seed in range(s["seeds"]):
            cfg = {"seed": seed, "data": data, "model": {"name": "resnet18", "options": {"width": s["width"]}},
                   "optim": {"name": "adam", "lr": 1e-3}, "regularize": {"dropout": {"p": p}},
                   "train": {"epochs": s["epochs"], "batch_size": 128}}
            trainer = make_trainer(cfg, settings)
            he_init(trainer.model)  # the global generator the trainer seeded: the same weights per seed
            tracker = RatioTracker(first_convs(trainer.model))
            result = trainer.fit(callbacks=[tracker])
            histories[arm].append(tracker.history)
            accuracy[arm].append(result.final["test_acc"])
    numbers = {arm: {"test_acc": summary(accuracy[arm]), "history": histories[arm],
                     **{label: summary([h[-1][label]["ratio"] for h in histories[arm]]) for label in TRACKED}}
               for arm in arms}

    fig, axes = new_figure(len(TRACKED), width=3.8, height=3.2)
    for ax, label in zip(axes, TRACKED, strict=True):
        for arm in arms:
            for k, history in enumerate(histories[arm]):
                ax.plot([h["epoch"] for h in history], [h[label]["ratio"] for h in history],
                        color="tab:orange" if arms[arm] else "tab:blue", alpha=0.8, label=arm if k == 0 else None)
        ax.set(title=label, xlabel="epoch", ylabel="effective ratio (cos > 0.95)", ylim=(0, 1.05))
    axes[0].legend(fontsize=8)

    methods = sorted({h[label]["method"] for arm in arms for run_ in histories[arm] for h in run_ for label in TRACKED})
    claims = []
    for label in TRACKED:
        plain, drop = numbers["without dropout"][label], numbers["dropout p=0.5"][label]
        judged = s["seeds"] >= 3
        claims.append(Claim(f"{label}: dropout lowers the effective ratio", f"last epoch: {fmt(plain)} without vs "
                            f"{fmt(drop)} with dropout ({', '.join(methods)} cover)",
                            (drop["mean"] + drop["ci95"] < plain["mean"] - plain["ci95"]) if judged else None,
                            source="lower effective ratio with dropout over training (Fig. 1.3 c)",
                            criterion="95% CI at the last epoch with dropout entirely below that without "
                                      f"({s['seeds']} seeds; judged from 3)"))
    found = get_dataset_info("cifar10").probe(settings.data_dir)
    notes = [f"CIFAR-10 read from {found.location if found else 'the data folders'}.",
             f"Tracked: {first_convs(trainer.model)}; each output channel's flattened 3×3 kernel is one neuron "
             "(no bias: BatchNorm follows). Every epoch records the exact cover (or the greedy bound if the MILP "
             "timed out, see 'method') and the greedy bound beside it ('greedy')."]
    if settings.quick:
        notes.append(f"Quick mode: ResNet-18 at width {s['width']}, first {s['train_subset']} training / test "
                     f"images, {s['epochs']} epochs, 1 seed — a smoke test of the pipeline, not a result.")
    return Outcome(figures={"effective_ratio": fig}, numbers=numbers, claims=claims, settings=s, choices=CHOICES,
                   notes=notes)
