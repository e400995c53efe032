"""CIFAR edge cases found by mutation testing: empty files, './'-prefixed or incomplete or unreadable
archives, and the probe's record counts at the real sizes (sparse files: no data written)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from reglab.config import DataConfig
from reglab.data import CorruptDataError, dataset_status, load_dataset


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("REGLAB_DATA", raising=False)


def records(coarse: list[int], fine: list[int]) -> bytes:
    """CIFAR-100 records: coarse byte, fine byte, then 3072 pixels all equal to the record's index."""
    rows = [bytes([c, f]) + bytes([i]) * 3072 for i, (c, f) in enumerate(zip(coarse, fine, strict=True))]
    return b"".join(rows)


def archive(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, buf in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(buf)
            tar.addfile(info, io.BytesIO(buf))


def load100(folder: Path, labels: str = "fine"):
    return load_dataset(DataConfig(name="cifar100", data_dir=folder, normalize=False, options={"labels": labels}))


def test_an_empty_cifar_file_is_corrupt_naming_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    record = bytes([3]) + bytes(3072)
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(record)
    (folder / "test_batch.bin").write_bytes(b"")
    with pytest.raises(CorruptDataError, match=r"test_batch\.bin: 0 bytes is not a positive multiple"):
        load_dataset(DataConfig(name="cifar10", data_dir=tmp_path))


def test_an_archive_whose_members_start_with_dot_slash_loads(tmp_path):
    """`tar czf x.tar.gz ./cifar-100-binary` names its members ./cifar-100-binary/…"""
    archive(tmp_path / "cifar-100-binary.tar.gz", {"./cifar-100-binary/train.bin": records([1, 2], [10, 20]),
                                                   "./cifar-100-binary/test.bin": records([3], [99])})
    data = load100(tmp_path)
    assert data.y_train.tolist() == [10, 20] and data.y_test.tolist() == [99]
    assert data.x_train[:, :, 0, 0].mul(255).round().tolist() == [[0.0] * 3, [1.0] * 3]
    assert load100(tmp_path, "coarse").y_train.tolist() == [1, 2]


def test_an_archive_lacking_a_member_is_corrupt_naming_it(tmp_path):
    archive(tmp_path / "cifar-100-binary.tar.gz", {"cifar-100-binary/train.bin": records([1], [10])})
    with pytest.raises(CorruptDataError, match=r"cifar-100-binary\.tar\.gz: archive lacks cifar-100-binary/test\.bin"):
        load100(tmp_path)


@pytest.mark.parametrize("content", [b"this is no gzip", b""], ids=["garbage", "empty"])
def test_an_unreadable_archive_is_corrupt_naming_it(tmp_path, content):
    (tmp_path / "cifar-100-binary.tar.gz").write_bytes(content)
    with pytest.raises(CorruptDataError, match=r"cifar-100-binary\.tar\.gz: unreadable archive"):
        load100(tmp_path)


def test_the_probe_counts_records_of_the_real_sizes(tmp_path):
    """50,000 / 10,000 records of 3074 (CIFAR-100) and 3073 (CIFAR-10) bytes, as sparse files."""
    def sparse(path: Path, size: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.truncate(size)

    sparse(tmp_path / "cifar-100-binary" / "train.bin", 50_000 * 3074)
    sparse(tmp_path / "cifar-100-binary" / "test.bin", 10_000 * 3074)
    for i in range(1, 6):
        sparse(tmp_path / "cifar-10-batches-bin" / f"data_batch_{i}.bin", 10_000 * 3073)
    sparse(tmp_path / "cifar-10-batches-bin" / "test_batch.bin", 10_000 * 3073)
    rows = {s.name: s for s in dataset_status(tmp_path)}
    assert rows["cifar100"].available and rows["cifar100"].size.startswith("50000 train / 10000 test, ")
    assert rows["cifar10"].available and rows["cifar10"].size.startswith("50000 train / 10000 test, ")
    assert rows["cifar10"].location == str(tmp_path / "cifar-10-batches-bin")


def test_pixels_are_channel_major_planes(tmp_path):
    """One record whose red, green and blue planes are 0..255 ramps with known offsets."""
    planes = np.stack([(np.arange(1024) + 10 * k) % 256 for k in range(3)]).astype(np.uint8)  # (3, 1024)
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    rec = bytes([0, 5]) + planes.tobytes()
    (folder / "train.bin").write_bytes(rec)
    (folder / "test.bin").write_bytes(rec)
    x = load100(tmp_path).x_train[0].mul(255).round()
    for k in range(3):
        for r, c in ((0, 0), (0, 31), (1, 0), (31, 31), (7, 13)):
            assert x[k, r, c].item() == (32 * r + c + 10 * k) % 256
