"""IDX/MNIST edge cases found by mutation testing: truncated headers, broken gzip, out-of-range labels,
raw-over-gzip preference, an empty split. Every file is hand-built with struct, contents known."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from reglab.config import DataConfig
from reglab.data import CorruptDataError, dataset_status, load_dataset
from reglab.data.idx import IMAGES, read_idx_header

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("REGLAB_DATA", raising=False)


def idx(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_set(folder: Path, train_labels=(0, 1, 2), test_labels=(3, 4), fill: int = 0) -> None:
    """Four raw IDX files; image i of a split is filled with `fill` + i (so each image is recognisable)."""
    folder.mkdir(parents=True, exist_ok=True)
    for (images, labels), values in ((STEMS[:2], train_labels), (STEMS[2:], test_labels)):
        n = len(values)
        pixels = (fill + np.arange(n))[:, None, None] * np.ones((n, 28, 28), dtype=np.int64)
        (folder / images).write_bytes(idx(pixels, 2051))
        (folder / labels).write_bytes(idx(np.array(values, dtype=np.int64), 2049))


def load(folder: Path):
    return load_dataset(DataConfig(name="mnist", data_dir=folder, normalize=False))


def test_a_truncated_idx_header_is_a_corrupt_file_naming_it(tmp_path):
    write_set(tmp_path)
    path = tmp_path / STEMS[2]
    path.write_bytes(struct.pack(">I", 2051) + b"\x00\x00")  # magic, then 2 of the 12 size bytes
    with pytest.raises(CorruptDataError, match=rf"{STEMS[2]}: truncated IDX header \(6 bytes\)"):
        load(tmp_path)
    with pytest.raises(CorruptDataError, match="truncated IDX header"):
        read_idx_header(path, IMAGES)
    path = tmp_path / STEMS[3]  # the probe reads the label headers: `reglab datasets` reports, never crashes
    path.write_bytes(struct.pack(">I", 2049) + b"\x00")
    row = {s.name: s for s in dataset_status(tmp_path)}["mnist"]
    assert not row.available and "truncated IDX header" in row.size


def test_a_gz_file_that_is_not_gzip_is_a_corrupt_file_naming_it(tmp_path):
    write_set(tmp_path)
    (tmp_path / STEMS[0]).unlink()
    (tmp_path / f"{STEMS[0]}.gz").write_bytes(b"not gzip at all, just bytes")
    with pytest.raises(CorruptDataError, match=rf"{STEMS[0]}\.gz: unreadable"):
        load(tmp_path)
    (tmp_path / f"{STEMS[0]}.gz").write_bytes(gzip.compress(idx(np.zeros((3, 28, 28)), 2051))[:-12])  # cut off
    with pytest.raises(CorruptDataError, match=rf"{STEMS[0]}\.gz: unreadable"):
        load(tmp_path)


def test_an_idx_label_of_ten_is_refused_naming_the_file(tmp_path):
    write_set(tmp_path, test_labels=(9, 10))
    with pytest.raises(CorruptDataError, match=rf"{STEMS[3]}: label 10 outside 0\.\.9"):
        load(tmp_path)
    write_set(tmp_path, test_labels=(9, 9))  # 9, the largest class, is fine
    assert load(tmp_path).y_test.tolist() == [9, 9]


def test_a_raw_file_is_preferred_over_its_gzipped_twin(tmp_path):
    write_set(tmp_path, train_labels=(1, 1, 1), fill=7)
    other = idx(np.array([2, 2, 2]), 2049)  # a .gz beside the raw file with other labels
    (tmp_path / f"{STEMS[1]}.gz").write_bytes(gzip.compress(other))
    data = load(tmp_path)
    assert data.y_train.tolist() == [1, 1, 1]
    assert data.x_train[:, 0, 5, 5].mul(255).round().tolist() == [7.0, 8.0, 9.0]
    (tmp_path / STEMS[1]).unlink()  # only the .gz left: it is used
    assert load(tmp_path).y_train.tolist() == [2, 2, 2]


def test_an_empty_test_split_loads_as_zero_samples(tmp_path):
    write_set(tmp_path, test_labels=())
    data = load(tmp_path)
    assert tuple(data.x_test.shape) == (0, 1, 28, 28) and tuple(data.y_test.shape) == (0,)
    assert data.y_train.tolist() == [0, 1, 2]


def test_idx_images_other_than_28_by_28_are_corrupt_naming_the_file(tmp_path):
    """`mnist` declares (1, 28, 28) (dataset_shape) and models are built for it: other sizes are refused on load."""
    write_set(tmp_path)
    (tmp_path / STEMS[0]).write_bytes(idx(np.zeros((3, 10, 12)), 2051))
    with pytest.raises(CorruptDataError, match=rf"{STEMS[0]}: images of 10×12 pixels, expected 28×28"):
        load(tmp_path)


def test_a_short_label_file_where_the_images_belong_is_named_by_its_magic_number(tmp_path):
    """A label file in the images' place is the wrong file, not a truncated one, whatever its length."""
    write_set(tmp_path)
    (tmp_path / STEMS[0]).write_bytes(struct.pack(">II", 2049, 2) + b"\x01\x02")  # 10 bytes < a 16-byte image header
    with pytest.raises(CorruptDataError, match=r"bad IDX magic number 2049 \(expected 2051 for an image file\)"):
        read_idx_header(tmp_path / STEMS[0], IMAGES)
