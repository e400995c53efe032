"""Data files from Debian's archive, without root: `apt-get download` one package, unpack, verify.

apt works here with private state (its package lists and cache in a temporary folder, no lock), so
no root and no change to the system are needed; apt itself checks the package against the archive's
signed index. The unpacked data files are then checked against SHA-256 hashes of their decompressed
content pinned below, and only then copied (atomically) into reglab's cache. Needs ``apt-get`` and
``dpkg-deb`` (any Debian or Ubuntu machine with access to its archive).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from reglab.data.base import CorruptDataError
from reglab.data.paths import atomic_file


@dataclass(frozen=True)
class DebianData:
    package: str
    folder: str  # where the package installs the files, e.g. usr/share/datasets/fashion-mnist
    content_sha256: dict[str, str]  # file name → SHA-256 of its (gunzipped) content


DEBIAN: dict[str, DebianData] = {
    "fashion-mnist": DebianData(
        "dataset-fashion-mnist", "usr/share/datasets/fashion-mnist",
        {"train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
         "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
         "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
         "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}),
}


def _content_sha256(path: Path) -> str:
    with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def debian_here(name: str, dest_dir: Path) -> bool:
    """Whether `dest_dir` holds every file of `name`'s Debian package, each with its pinned content hash."""
    try:
        return all(_content_sha256(dest_dir / file) == expected
                   for file, expected in DEBIAN[name].content_sha256.items())
    except (OSError, EOFError, zlib.error):  # absent, or not (whole) gzip: not the package's file
        return False


def _run(args: list[str], cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise OSError(f"{' '.join(args[:1] + args[-2:])} failed (exit {done.returncode}): {last[0]}")


def fetch_from_debian(name: str, dest_dir: Path) -> str:
    """Download and unpack `name`'s Debian package, verify its files, copy them into `dest_dir`.

    Returns the package file's name (what was fetched). Raises OSError when apt or dpkg-deb is missing
    or fails, CorruptDataError when a file's content does not match its pinned hash (nothing is kept).
    """
    spec = DEBIAN[name]
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise OSError(f"{tool} not found (the Debian archive needs a Debian or Ubuntu machine)")
    with tempfile.TemporaryDirectory(prefix="reglab-apt-") as tmp:
        work = Path(tmp)
        for sub in ("lists/partial", "cache/archives/partial", "unpacked"):
            (work / sub).mkdir(parents=True)
        private = ["-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}",
                   "-o", "Debug::NoLocking=1", "-qq"]
        _run(["apt-get", *private, "update"], work)
        _run(["apt-get", *private, "download", spec.package], work)
        debs = sorted(work.glob(f"{spec.package}_*.deb"))
        if not debs:
            raise OSError(f"apt-get download {spec.package} left no package file")
        _run(["dpkg-deb", "-x", str(debs[0]), str(work / "unpacked")], work)
        folder = work / "unpacked" / spec.folder
        for file, expected in spec.content_sha256.items():
            path = folder / file
            if not path.is_file():
                raise CorruptDataError(f"{debs[0].name}: {spec.folder}/{file} missing from the package")
            if (got := _content_sha256(path)) != expected:
                raise CorruptDataError(f"{debs[0].name}: {file} has content SHA-256 {got}, expected "
                                       f"{expected}; nothing was kept")
        for file in spec.content_sha256:
            with atomic_file(dest_dir / file) as out, (folder / file).open("rb") as src:
                shutil.copyfileobj(src, out)
        return debs[0].name
