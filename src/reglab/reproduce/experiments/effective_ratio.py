"""`effective-ratio`: condensation of a ResNet-18's conv layers over training (Zhang & Xu 2022).

ResNet-18 on CIFAR-10 with and without dropout (p = 0.5 after each block's output activation), Adam
lr 1e-3, batch 128; the effective ratio (greedy set cover at cosine > 0.95 of each output channel's
flattened kernel) of three 3×3 conv layers (early, middle, last) after every epoch. The source:
with dropout the ratio falls lower. CIFAR-10 must be present (``--data-dir`` or the usual folders);
without it the run stops with the data registry's not-found message.
"""

from __future__ import annotations

from torch import nn

from reglab.data import get_dataset_info
from reglab.reproduce.common import make_trainer, new_figure, sci
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.theory import CondensationTracker

CHOSEN = (1, 8, 16)  # positions among the 17 non-shortcut 3×3 convs of ResNet-18 (0: the stem)
FULL = {"epochs": 30, "width": 1.0, "train_subset": None, "test_subset": None}
QUICK = {"epochs": 2, "width": 0.125, "train_subset": 64, "test_subset": 64}


@preset("effective-ratio")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    data = {"name": "cifar10", "train_subset": s["train_subset"], "test_subset": s["test_subset"]}
    fig, axes = new_figure(len(CHOSEN), width=3.6, height=3.2)
    layers = [f"conv{k}" for k in CHOSEN]
    numbers, claims = {}, []
    for label, p in (("without dropout", 0.0), ("dropout p=0.5", 0.5)):
        cfg = {"data": data, "model": {"name": "resnet18", "options": {"width": s["width"]}},
               "optim": {"name": "adam", "lr": 1e-3}, "regularize": {"dropout": {"p": p}},
               "train": {"epochs": s["epochs"], "batch_size": 128}}
        trainer = make_trainer(cfg, settings)
        convs = [n for n, m in trainer.model.named_modules() if isinstance(m, nn.Conv2d) and "shortcut" not in n]
        tracker = CondensationTracker([convs[k] for k in CHOSEN])
        result = trainer.fit(callbacks=[tracker])
        history = [{"epoch": h["epoch"], **{layer: h[f"effective_ratio/{convs[k]}"]
                                            for layer, k in zip(layers, CHOSEN, strict=True)}}
                   for h in tracker.history]
        numbers[label] = {"test_acc": result.final["test_acc"], "history": history}
        for ax, layer, k in zip(axes, layers, CHOSEN, strict=True):
            ax.plot([h["epoch"] for h in history], [h[layer] for h in history], marker="o", markersize=3, label=label)
            ax.set(title=f"3×3 conv {k} of 17 ({convs[k]})", xlabel="epoch", ylabel="effective ratio",
                   ylim=(0, 1.05))
    axes[0].legend(fontsize=8)
    for layer in layers:
        plain, drop = (numbers[k]["history"][-1][layer] for k in numbers)
        claims.append(Claim(f"{layer}: dropout lowers the effective ratio", f"{sci(plain)} without vs {sci(drop)} "
                            "with dropout", drop < plain))
    found = get_dataset_info("cifar10").probe(settings.data_dir)
    notes = [f"CIFAR-10 read from {found.location if found else 'the data folders'}."]
    if settings.quick:
        notes.append(f"Quick mode: ResNet-18 at width {s['width']}, first {s['train_subset']} training / test "
                     f"images, {s['epochs']} epochs — a smoke test of the pipeline, not a result.")
    return Outcome(figures={"effective_ratio": fig}, numbers=numbers, claims=claims, settings=s, notes=notes)
