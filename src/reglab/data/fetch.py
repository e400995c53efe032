"""`reglab data fetch NAME`: put a data set's files into reglab's cache, saying from where.

Sources, tried in order: the official files (SHA-256 checked, `reglab.data.download`), then Debian's
archive without root (`reglab.data.debian`) for the data sets Debian packages. Data sets that are
generated (MNIST-1D, the synthetic ones) or shipped inside a Python package (mnist-5k) need no fetch.
"""

from __future__ import annotations

from reglab.config import ConfigError
from reglab.data.base import CorruptDataError
from reglab.data.debian import DEBIAN, debian_here, fetch_from_debian
from reglab.data.download import OFFICIAL, download_official, official_here
from reglab.data.paths import cache_dir

FETCHABLE = sorted(set(OFFICIAL) | set(DEBIAN))


def fetch_command(name: str) -> str | None:
    """The one command that gets `name` onto this machine, or None when nothing needs fetching."""
    return f"reglab data fetch {name}" if name in FETCHABLE else None


def fetch_dataset(name: str) -> str:
    """Fetch `name` into its cache folder; returns one line saying what came from where.

    A set already in the cache is verified (official hashes, else Debian's content hashes) and kept;
    files that match neither are replaced. Raises ConfigError for a data set that cannot be fetched,
    OSError when every source failed (the message lists each source's error). A source that fails
    (unreachable, or a file whose hash does not match) keeps nothing and the next one is tried.
    """
    if name not in FETCHABLE:
        from reglab.data.registry import available_datasets

        known = name in {info.name for info in available_datasets()}
        raise ConfigError(f"data set {name!r} {'needs no fetch' if known else 'is unknown'} "
                          f"(fetchable: {', '.join(FETCHABLE)})")
    dest = cache_dir(name)
    if name in OFFICIAL and official_here(name, dest):
        return f"{name}: already here, the official files (SHA-256 checked) → {dest}"
    if name in DEBIAN and debian_here(name, dest):
        return f"{name}: already here, Debian's package files (content SHA-256 checked) → {dest}"
    errors = []
    if name in OFFICIAL:
        try:
            download_official(name, dest)
            return f"{name}: official files (SHA-256 checked) → {dest}"
        except (OSError, CorruptDataError) as err:
            errors.append(f"official files: {err}")
    if name in DEBIAN:
        try:
            package = fetch_from_debian(name, dest)
            return f"{name}: Debian package {package} (content SHA-256 checked) → {dest}"
        except (OSError, CorruptDataError) as err:
            errors.append(f"Debian archive: {err}")
    raise OSError(f"{name}: could not fetch ({'; '.join(errors)})")
