"""Where data files are looked for, in order, and where downloads and generated data are cached.

Search order for a data set `name`:

1. ``data.data_dir`` and ``data.data_dir/<name>``;
2. ``$REGLAB_DATA/<name>``;
3. ``/usr/share/datasets/<name>`` (Debian's layout, e.g. the package ``dataset-fashion-mnist``),
   skipped when ``REGLAB_SYSTEM_DATA=0`` (CI sets it, so no test leans on a machine's extras);
4. the user cache ``${XDG_CACHE_HOME:-~/.cache}/reglab/<name>`` (where `reglab data fetch` and
   downloads put files).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from reglab.data.base import DataNotFoundError

SYSTEM_DIR = Path("/usr/share/datasets")


def cache_dir(name: str) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/reglab/<name>`` (not created)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "reglab" / name


def system_data_enabled() -> bool:
    """False when ``REGLAB_SYSTEM_DATA=0``: the system folder is then not searched."""
    return os.environ.get("REGLAB_SYSTEM_DATA", "1") != "0"


def search_dirs(name: str, data_dir: Path | None) -> list[Path]:
    """The folders searched for `name`, in order (existing or not)."""
    dirs = [] if data_dir is None else [Path(data_dir), Path(data_dir) / name]
    if os.environ.get("REGLAB_DATA"):
        dirs.append(Path(os.environ["REGLAB_DATA"]) / name)
    if system_data_enabled():
        dirs.append(SYSTEM_DIR / name)
    return [*dirs, cache_dir(name)]


def find(name: str, data_dir: Path | None, match: Callable[[Path], object | None]) -> object | None:
    """The first non-None ``match(folder)`` over the existing search folders, else None."""
    for folder in search_dirs(name, data_dir):
        if folder.is_dir() and (found := match(folder)) is not None:
            return found
    return None


def not_found(name: str, data_dir: Path | None, wanted: Iterable[str], how: str) -> DataNotFoundError:
    """A one-line DataNotFoundError: the files wanted, every folder looked in, and `how` to get them."""
    looked = ", ".join(str(d) for d in search_dirs(name, data_dir))
    if not os.environ.get("REGLAB_DATA"):
        looked += f" ($REGLAB_DATA/{name} too when REGLAB_DATA is set)"
    return DataNotFoundError(f"{name}: {' + '.join(wanted)} not found; looked in: {looked}. {how}")


def human_size(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB" if num_bytes >= 1e5 else f"{num_bytes / 1e3:.1f} kB"


@contextlib.contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces `dest` only when the block exits normally (never a partial `dest`), with
    the permissions of a file created as usual (mkstemp's temporary file is private to its owner)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
