"""`mnist` and `fashion-mnist`: the official IDX files, 60,000 training and 10,000 test 28×28 images.

Each search folder (see `reglab.data.paths`) must hold all four files, each raw or gzipped:
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte`` (``.gz``). Debian's ``dataset-fashion-mnist`` installs the gzipped four in
``/usr/share/datasets/fashion-mnist/``. Images become ``(N, 1, 28, 28)`` float32 in [0, 1] (bytes / 255).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reglab.config import ConfigError
from reglab.data.base import CorruptDataError, DataNotFoundError, TensorData
from reglab.data.download import OFFICIAL, download_official, file_sha256
from reglab.data.idx import IMAGES, LABELS, read_idx, read_idx_header
from reglab.data.paths import cache_dir, find, human_size, not_found, search_dirs
from reglab.data.registry import Found, register_dataset

SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
STEMS = [stem for pair in SPLITS.values() for stem in pair]
NUM_CLASSES = 10
OTHER = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}
"""The two sets' files have the same names."""


def _idx_file(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


def idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in `folder` by stem (raw preferred over .gz), or None if any is missing."""
    files = {stem: _idx_file(folder, stem) for stem in STEMS}
    return None if None in files.values() else files


def _incomplete(name: str, data_dir: Path | None, how: str) -> DataNotFoundError | None:
    """The error for the first search folder that holds some of the four files but not all, naming
    only the missing ones (None when no folder holds any)."""
    for folder in search_dirs(name, data_dir):
        missing = [f"{stem}[.gz]" for stem in STEMS if _idx_file(folder, stem) is None]
        if 0 < len(missing) < len(STEMS):
            return DataNotFoundError(f"{name}: {folder} lacks {' + '.join(missing)} (it has the set's other "
                                     f"files). {how}")
    return None


def _read_split(images: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = read_idx(images, IMAGES), read_idx(labels, LABELS)
    if len(x) != len(y):
        raise CorruptDataError(f"{labels}: {len(y)} labels for the {len(x)} images of {images}")
    if x.shape[1:] != (28, 28):
        raise CorruptDataError(f"{images}: images of {x.shape[1]}×{x.shape[2]} pixels, expected 28×28")
    if y.size and y.max() >= NUM_CLASSES:
        raise CorruptDataError(f"{labels}: label {y.max()} outside 0..{NUM_CLASSES - 1}")
    pixels = x.astype(np.float32)[:, None]  # (N, 1, rows, cols)
    pixels /= 255
    return torch.from_numpy(pixels), torch.from_numpy(y.astype(np.int64))


def _load(name: str, data_dir: Path | None, download: bool, how: str) -> TensorData:
    files = find(name, data_dir, idx_files)
    if files is None and download:
        files = idx_files(download_official(name, cache_dir(name)))
    if files is None:
        raise _incomplete(name, data_dir, how) or not_found(name, data_dir, [f"{s}[.gz]" for s in STEMS], how)
    if data_dir is not None and files[STEMS[0]].parent == Path(data_dir):  # the one folder any set is sought in
        _not_the_other_set(name, files)
    x_train, y_train = _read_split(*(files[s] for s in SPLITS["train"]))
    x_test, y_test = _read_split(*(files[s] for s in SPLITS["test"]))
    return TensorData(name, x_train, y_train, x_test, y_test, num_classes=NUM_CLASSES)


def _not_the_other_set(name: str, files: dict[str, Path]) -> None:
    """Refuse the other set's official (gzipped) files found under this set's file names."""
    theirs = {remote.sha256 for remote in OFFICIAL[OTHER[name]]}
    for path in files.values():
        if path.suffix == ".gz" and file_sha256(path) in theirs:
            raise ConfigError(f"data.data_dir: {path} is {OTHER[name]}'s official file, not {name}'s (the two sets "
                              f"share file names); keep each set in its own folder, e.g. {path.parent / name}")


def _probe(name: str):
    def probe(data_dir: Path | None) -> Found | None:
        files = find(name, data_dir, idx_files)
        if files is None:
            return None
        n_train, n_test = (read_idx_header(files[SPLITS[s][1]], LABELS)[0] for s in ("train", "test"))
        size = human_size(sum(p.stat().st_size for p in files.values()))
        return Found(str(files[STEMS[0]].parent), f"{n_train} train / {n_test} test, {size}")

    return probe


def _how(name: str, extra: str = "") -> str:
    return (f"Run `reglab data fetch {name}` (or set data.download=true) to fetch them into {cache_dir(name)}, "
            f"or copy them into one of those folders{extra}.")


@register_dataset("mnist", description="MNIST handwritten digits: 60k/10k 28×28 grey, 10 classes (IDX files)",
                  probe=_probe("mnist"),
                  shape=lambda: ((1, 28, 28), 10))
def load_mnist(*, data_dir: Path | None, download: bool) -> TensorData:
    return _load("mnist", data_dir, download, _how("mnist"))


@register_dataset("fashion-mnist", description="Fashion-MNIST (Zalando): 60k/10k 28×28 grey, 10 classes "
                  "(IDX files; Debian package dataset-fashion-mnist)", probe=_probe("fashion-mnist"),
                  shape=lambda: ((1, 28, 28), 10))
def load_fashion_mnist(*, data_dir: Path | None, download: bool) -> TensorData:
    how = _how("fashion-mnist", " (`reglab data fetch` takes them from the official files, else from Debian's "
               "package dataset-fashion-mnist, no root needed)")
    return _load("fashion-mnist", data_dir, download, how)
