"""`cifar10` and `cifar100`: the official *binary* releases (never the pickled Python ones).

In each search folder (see `reglab.data.paths`) the files are taken from, in order: the extracted
folder (``cifar-10-batches-bin/`` with ``data_batch_{1..5}.bin`` + ``test_batch.bin``;
``cifar-100-binary/`` with ``train.bin`` + ``test.bin``), the same files directly in the search folder,
or the official archive (``cifar-10-binary.tar.gz``, ``cifar-100-binary.tar.gz``), whose members are
read in memory without extracting. Images become ``(N, 3, 32, 32)`` float32 in [0, 1] (bytes / 255).
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from reglab.data.base import CorruptDataError, TensorData
from reglab.data.cifar import PIXELS, parse_cifar
from reglab.data.download import download_official
from reglab.data.paths import cache_dir, find, human_size, not_found
from reglab.data.registry import Found, register_dataset


@dataclass(frozen=True)
class Layout:
    folder: str  # the archive's top folder
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int


LAYOUTS = {
    "cifar10": Layout("cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                      tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",), 1),
    "cifar100": Layout("cifar-100-binary", "cifar-100-binary.tar.gz", ("train.bin",), ("test.bin",), 2),
}


def _source(layout: Layout, folder: Path) -> Path | None:
    """The extracted folder or the archive holding `layout`'s files inside `folder`, or None."""
    for candidate in (folder / layout.folder, folder):
        if all((candidate / f).is_file() for f in layout.train + layout.test):
            return candidate
    archive = folder / layout.archive
    return archive if archive.is_file() else None


def _read_files(layout: Layout, source: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parsed records per file name, from an extracted folder or (in memory) from the archive."""
    if source.is_dir():
        return {f: parse_cifar((source / f).read_bytes(), label_bytes=layout.label_bytes,
                               source=str(source / f)) for f in layout.train + layout.test}
    wanted = {f"{layout.folder}/{f}": f for f in layout.train + layout.test}
    out = {}
    try:
        with tarfile.open(source, "r:gz") as tar:
            for member in tar:
                if member.isfile() and member.name.removeprefix("./") in wanted:
                    buf = tar.extractfile(member).read()
                    out[wanted[member.name.removeprefix("./")]] = parse_cifar(
                        buf, label_bytes=layout.label_bytes, source=f"{source}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise CorruptDataError(f"{source}: unreadable archive ({err})") from None
    missing = [m for m, f in wanted.items() if f not in out]
    if missing:
        raise CorruptDataError(f"{source}: archive lacks {', '.join(missing)}")
    return out


def _tensors(files: dict[str, tuple[np.ndarray, np.ndarray]], names: tuple[str, ...], label: int,
             num_classes: int, source: Path):
    """The images and labels of the files `names`, in order; a label out of range names its file."""
    for name in names:
        if (top := files[name][1][:, label].max()) >= num_classes:
            where = f"{source}:{name}" if source.is_file() else source / name
            raise CorruptDataError(f"{where}: label {top} outside 0..{num_classes - 1}")
    images = np.concatenate([files[name][0] for name in names])
    labels = np.concatenate([files[name][1][:, label] for name in names]).astype(np.int64)
    pixels = images.astype(np.float32)
    pixels /= 255
    return torch.from_numpy(pixels), torch.from_numpy(labels)


def _load(name: str, data_dir: Path | None, download: bool, label: int, num_classes: int) -> TensorData:
    layout = LAYOUTS[name]
    source = find(name, data_dir, lambda folder: _source(layout, folder))
    if source is None and download:
        source = _source(layout, download_official(name, cache_dir(name)))
    if source is None:
        how = (f"Run `reglab data fetch {name}` (or set data.download=true) to fetch {layout.archive} "
               f"(SHA-256 checked) into {cache_dir(name)}, "
               "or copy the archive or its extracted files into one of those folders.")
        files = f"{layout.folder}/{{{','.join(layout.train + layout.test)}}} or {layout.archive}"
        raise not_found(name, data_dir, [files], how)
    files = _read_files(layout, source)
    x_train, y_train = _tensors(files, layout.train, label, num_classes, source)
    x_test, y_test = _tensors(files, layout.test, label, num_classes, source)
    return TensorData(name, x_train, y_train, x_test, y_test, num_classes=num_classes)


def _probe(name: str):
    layout = LAYOUTS[name]

    def probe(data_dir: Path | None) -> Found | None:
        source = find(name, data_dir, lambda folder: _source(layout, folder))
        if source is None:
            return None
        if source.is_file():
            return Found(str(source), f"archive, {human_size(source.stat().st_size)}")
        record = layout.label_bytes + PIXELS
        n_train, n_test = (sum((source / f).stat().st_size for f in files) // record
                           for files in (layout.train, layout.test))
        size = sum((source / f).stat().st_size for f in layout.train + layout.test)
        return Found(str(source), f"{n_train} train / {n_test} test, {human_size(size)}")

    return probe


@register_dataset("cifar10", description="CIFAR-10: 50k/10k 32×32 colour, 10 classes (binary release)",
                  probe=_probe("cifar10"),
                  shape=lambda: ((3, 32, 32), 10))
def load_cifar10(*, data_dir: Path | None, download: bool) -> TensorData:
    return _load("cifar10", data_dir, download, label=0, num_classes=10)


@register_dataset("cifar100", description="CIFAR-100: 50k/10k 32×32 colour, 100 fine or 20 coarse classes "
                  "(binary release)", probe=_probe("cifar100"),
                  shape=lambda labels: ((3, 32, 32), 100 if labels == "fine" else 20))
def load_cifar100(*, data_dir: Path | None, download: bool,
                  labels: Literal["fine", "coarse"] = "fine") -> TensorData:
    """`labels`: ``fine`` (100 classes, the record's 2nd byte) or ``coarse`` (20 superclasses, its 1st)."""
    fine = labels == "fine"
    return _load("cifar100", data_dir, download, label=1 if fine else 0, num_classes=100 if fine else 20)
