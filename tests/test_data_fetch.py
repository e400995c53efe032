"""`reglab data fetch`: the Debian-archive source (with a stand-in apt-get and a real .deb built by
dpkg-deb), content verification, the fallback order, and the REGLAB_SYSTEM_DATA switch.

No test touches the network: the official source is replaced by one that fails as an offline machine
does, and apt-get by a script that hands out a package built here.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reglab.config import ConfigError
from reglab.data import dataset_status
from reglab.data import debian as debian_module
from reglab.data import fetch as fetch_module
from reglab.data.fetch import fetch_command, fetch_dataset
from reglab.data.paths import SYSTEM_DIR, cache_dir, search_dirs

needs_dpkg_deb = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not found (Debian only)")

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("REGLAB_DATA", raising=False)

    def offline(name, dest):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(fetch_module, "download_official", offline)


def idx_payloads(seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    shapes = {"train-images-idx3-ubyte": (6, 28, 28), "train-labels-idx1-ubyte": (6,),
              "t10k-images-idx3-ubyte": (4, 28, 28), "t10k-labels-idx1-ubyte": (4,)}
    out = {}
    for stem, shape in shapes.items():
        magic = 2051 if len(shape) == 3 else 2049
        header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
        out[stem] = header + rng.integers(0, 10, shape, dtype=np.uint8).tobytes()
    return out


@pytest.fixture
def stand_in_archive(tmp_path, monkeypatch):
    """A real .deb of generated IDX files, an `apt-get` on PATH that serves it, and its pinned hashes."""
    payloads = idx_payloads()
    root = tmp_path / "pkg"
    folder = root / "usr/share/datasets/fashion-mnist"
    folder.mkdir(parents=True)
    for stem, payload in payloads.items():
        (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text("Package: dataset-fashion-mnist\nVersion: 1.0-1\nArchitecture: all\n"
                                         "Maintainer: test <t@example.org>\nDescription: stand-in\n")
    archive = tmp_path / "archive"
    archive.mkdir()
    deb = archive / "dataset-fashion-mnist_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(root), str(deb)], check=True, capture_output=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f'#!{sys.executable}\nimport shutil, sys\n'
                                     f'if sys.argv[-2] == "download": shutil.copy("{deb}", ".")\n')
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(shutil.which('dpkg-deb')).parent}")
    hashes = {f"{stem}.gz": hashlib.sha256(p).hexdigest() for stem, p in payloads.items()}
    spec = debian_module.DebianData("dataset-fashion-mnist", "usr/share/datasets/fashion-mnist", hashes)
    monkeypatch.setitem(debian_module.DEBIAN, "fashion-mnist", spec)
    return payloads


@needs_dpkg_deb
def test_debian_archive_fills_the_cache_after_official_files_fail(stand_in_archive):
    line = fetch_dataset("fashion-mnist")
    dest = cache_dir("fashion-mnist")
    assert "Debian package dataset-fashion-mnist_1.0-1_all.deb" in line and str(dest) in line
    for stem, payload in stand_in_archive.items():
        assert gzip.decompress((dest / f"{stem}.gz").read_bytes()) == payload
    status = {s.name: s for s in dataset_status()}["fashion-mnist"]
    assert status.available and status.get is None
    assert fetch_dataset("fashion-mnist") == (f"fashion-mnist: already here, Debian's package files (content "
                                              f"SHA-256 checked) → {dest}")  # verified, not fetched again


@needs_dpkg_deb
def test_content_mismatch_keeps_nothing_and_names_both_sources(stand_in_archive, monkeypatch):
    spec = debian_module.DEBIAN["fashion-mnist"]
    wrong = dict(spec.content_sha256, **{"t10k-labels-idx1-ubyte.gz": "0" * 64})
    changed = debian_module.DebianData(spec.package, spec.folder, wrong)
    monkeypatch.setitem(debian_module.DEBIAN, "fashion-mnist", changed)
    with pytest.raises(OSError, match=r"official files: .*Name or service.*; Debian archive: .*t10k-labels"):
        fetch_dataset("fashion-mnist")
    assert not any(cache_dir("fashion-mnist").glob("*idx*"))


def test_missing_apt_is_reported_not_crashed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither apt-get nor dpkg-deb
    with pytest.raises(OSError, match="apt-get not found"):
        fetch_dataset("fashion-mnist")


def test_generated_and_shipped_sets_need_no_fetch():
    with pytest.raises(ConfigError, match="'mnist1d' needs no fetch"):
        fetch_dataset("mnist1d")
    assert fetch_command("mnist1d") is None and fetch_command("fashion-mnist") == "reglab data fetch fashion-mnist"
    missing = {s.name: s.get for s in dataset_status() if not s.available}
    assert all(cmd == f"reglab data fetch {name}" for name, cmd in missing.items())


def test_system_folder_is_skipped_when_switched_off(monkeypatch):
    monkeypatch.setenv("REGLAB_SYSTEM_DATA", "1")
    assert SYSTEM_DIR / "fashion-mnist" in search_dirs("fashion-mnist", None)
    monkeypatch.setenv("REGLAB_SYSTEM_DATA", "0")
    assert SYSTEM_DIR / "fashion-mnist" not in search_dirs("fashion-mnist", None)
