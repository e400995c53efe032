"""Fetching official data files with urllib and verifying their SHA-256 before keeping them.

`OFFICIAL` lists, per data set, each file with its mirrors (tried in order) and SHA-256. MNIST
comes from the mirrors torchvision and TensorFlow use (yann.lecun.com refuses scripted downloads);
the others from their authors' servers.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from reglab.data.base import CorruptDataError
from reglab.data.paths import atomic_file


@dataclass(frozen=True)
class Remote:
    file: str
    urls: tuple[str, ...]  # mirrors, tried in order
    sha256: str


def _idx_set(bases: tuple[str, ...], hashes: dict[str, str]) -> tuple[Remote, ...]:
    return tuple(Remote(f, tuple(b + f for b in bases), h) for f, h in hashes.items())


OFFICIAL: dict[str, tuple[Remote, ...]] = {
    "mnist": _idx_set(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        {"train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
         "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
         "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
         "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"}),
    "fashion-mnist": _idx_set(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"),
        {"train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
         "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
         "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
         "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"}),
    "cifar10": (Remote("cifar-10-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                       "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),),
    "cifar100": (Remote("cifar-100-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",),
                        "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"),),
}


def fetch(url: str, dest: Path, sha256: str, *, timeout: float = 60.0) -> Path:
    """Download `url` (any scheme urllib opens, ``file://`` included) to `dest` if its SHA-256 matches.

    The bytes go to a temporary file beside `dest`, renamed into place only after verification
    (`atomic_file`), so a failed or corrupt download leaves nothing behind. Raises CorruptDataError on
    a hash mismatch and OSError (urllib's URLError) when the URL cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with atomic_file(Path(dest)) as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != sha256:
                raise CorruptDataError(f"{url}: SHA-256 {digest.hexdigest()} does not match the expected "
                                       f"{sha256}; the download was discarded")
    except http.client.HTTPException as err:  # e.g. IncompleteRead: a response cut off mid-stream
        raise OSError(f"{type(err).__name__}: {err}") from err
    return Path(dest)


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def official_here(name: str, dest_dir: Path) -> bool:
    """Whether `dest_dir` holds every official file of `name`, each with its SHA-256."""
    return all((dest_dir / r.file).is_file() and file_sha256(dest_dir / r.file) == r.sha256 for r in OFFICIAL[name])


def download_official(name: str, dest_dir: Path) -> Path:
    """Fetch each official file of `name` that `dest_dir` lacks or holds with other bytes (replaced only
    by a download that verifies), trying its mirrors in order."""
    for remote in OFFICIAL[name]:
        path = dest_dir / remote.file
        if path.is_file() and file_sha256(path) == remote.sha256:
            continue
        errors = []
        for url in remote.urls:
            try:
                fetch(url, dest_dir / remote.file, remote.sha256)
                break
            except (OSError, CorruptDataError) as err:  # unreachable, or serving other bytes: the next mirror
                errors.append(f"{url}: {err}")
        else:
            raise OSError(f"{name}: could not download {remote.file} ({'; '.join(errors)})")
    return dest_dir
