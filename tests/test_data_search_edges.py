"""Search order, fetch order and cache verification, `reglab datasets` on corrupt files, shapes
without loading (found by mutation testing). No network: every source is a local stand-in."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import pytest

from reglab.config import DataConfig
from reglab.data import dataset_status, load_dataset, paths
from reglab.data import download as download_module
from reglab.data import fetch as fetch_module
from reglab.data.download import Remote
from reglab.data.fetch import fetch_dataset
from reglab.data.paths import cache_dir, search_dirs
from reglab.data.registry import dataset_shape

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("REGLAB_DATA", raising=False)


def write_set(folder: Path, label: int, *, gz: bool = False) -> None:
    """Four IDX files, 2 train + 1 test images, every label `label` (which tells the sets apart)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in STEMS:
        n = 2 if stem.startswith("train") else 1
        shape = (n, 28, 28) if "images" in stem else (n,)
        magic = 2051 if "images" in stem else 2049
        body = bytes(n * 784) if "images" in stem else bytes([label]) * n
        payload = struct.pack(f">I{len(shape)}I", magic, *shape) + body
        (folder / (stem + ".gz" * gz)).write_bytes(gzip.compress(payload) if gz else payload)


def labels(**fields) -> list[int]:
    return load_dataset(DataConfig(name="mnist", normalize=False, **fields)).y_train.tolist()


def test_data_dir_then_reglab_data_then_system_then_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setenv("REGLAB_SYSTEM_DATA", "1")
    monkeypatch.setenv("REGLAB_DATA", str(tmp_path / "shared"))
    write_set(cache_dir("mnist"), 4)
    assert labels() == [4, 4]
    write_set(tmp_path / "system" / "mnist", 3)
    assert labels() == [3, 3]
    write_set(tmp_path / "shared" / "mnist", 2)
    assert labels() == [2, 2]
    write_set(tmp_path / "mine" / "mnist", 1)  # data_dir/<name>
    assert labels(data_dir=tmp_path / "mine") == [1, 1]
    write_set(tmp_path / "mine", 0)  # data_dir itself comes before data_dir/<name>
    assert labels(data_dir=tmp_path / "mine") == [0, 0]


def test_the_system_folder_is_searched_when_the_switch_is_unset(monkeypatch):
    monkeypatch.delenv("REGLAB_SYSTEM_DATA")
    assert paths.SYSTEM_DIR / "mnist" in search_dirs("mnist", None)


def _serve_mnist(tmp_path, monkeypatch) -> Path:
    served = tmp_path / "server"
    write_set(served, 5, gz=True)
    remotes = tuple(Remote(f"{s}.gz", ((served / f"{s}.gz").as_uri(),),
                           hashlib.sha256((served / f"{s}.gz").read_bytes()).hexdigest()) for s in STEMS)
    monkeypatch.setitem(download_module.OFFICIAL, "mnist", remotes)
    return served


def test_a_complete_cache_with_one_damaged_file_is_not_already_here(tmp_path, monkeypatch):
    served = _serve_mnist(tmp_path, monkeypatch)
    dest = cache_dir("mnist")
    dest.mkdir(parents=True)
    for s in STEMS:
        (dest / f"{s}.gz").write_bytes((served / f"{s}.gz").read_bytes())
    (dest / f"{STEMS[1]}.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x02\x07\x07"))  # valid, other labels
    assert fetch_dataset("mnist") == f"mnist: official files (SHA-256 checked) → {dest}"
    assert (dest / f"{STEMS[1]}.gz").read_bytes() == (served / f"{STEMS[1]}.gz").read_bytes()
    assert labels() == [5, 5]


def test_official_files_are_tried_before_the_debian_archive(tmp_path, monkeypatch):
    def official(name, dest):
        write_set(dest, 6, gz=True)
        return dest

    def debian(name, dest):
        raise AssertionError("the Debian archive was tried although the official files came")

    monkeypatch.setattr(fetch_module, "download_official", official)
    monkeypatch.setattr(fetch_module, "fetch_from_debian", debian)
    assert fetch_dataset("fashion-mnist") == (f"fashion-mnist: official files (SHA-256 checked) → "
                                              f"{cache_dir('fashion-mnist')}")


def test_datasets_status_reports_a_corrupt_file_instead_of_crashing(tmp_path):
    write_set(tmp_path, 1)
    (tmp_path / STEMS[1]).write_bytes(struct.pack(">II", 2051, 2) + b"\1\1")  # an image magic on labels
    rows = {s.name: s for s in dataset_status(tmp_path)}
    assert not rows["mnist"].available and rows["mnist"].size.startswith("unusable: ")
    assert "bad IDX magic number 2051" in rows["mnist"].size
    assert rows["mnist"].get == "reglab data fetch mnist"


def test_dataset_shape_follows_the_options():
    assert dataset_shape("teacher-student", {"d": 7}) == ((7,), 1)
    assert dataset_shape("teacher-student", {}) == ((10,), 1)
    assert dataset_shape("cifar100", {"labels": "coarse"}) == ((3, 32, 32), 20)
    assert dataset_shape("cifar100", {}) == ((3, 32, 32), 100)
    assert dataset_shape("mnist", {}) == ((1, 28, 28), 10)



def test_every_pinned_hash_is_lower_case_hex_as_hashlib_writes_it():
    """Files are checked with `hexdigest() == pinned`: an upper-case pin would make good files look damaged."""
    from reglab.data.debian import DEBIAN

    pinned = [r.sha256 for remotes in download_module.OFFICIAL.values() for r in remotes]
    pinned += [h for spec in DEBIAN.values() for h in spec.content_sha256.values()]
    assert len(pinned) == 14 and all(len(h) == 64 and set(h) <= set("0123456789abcdef") for h in pinned)
