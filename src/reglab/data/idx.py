"""Reader of the IDX format (LeCun et al.'s MNIST files), raw or gzip-compressed.

Layout, big-endian: magic ``0x00 0x00 <type> <ndim>`` as one uint32, then `ndim` uint32 sizes, then
``prod(sizes)`` items. Only unsigned bytes (type 0x08) are used here, so the magic is 2049 for a label
file (1 dim) and 2051 for an image file (3 dims: N, rows, cols).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from reglab.data.base import CorruptDataError

LABELS, IMAGES = 2049, 2051
_NDIM = {LABELS: 1, IMAGES: 3}


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _parse_header(head: bytes, path: Path, magic: int) -> tuple[int, ...]:
    ndim = _NDIM[magic]
    if len(head) >= 4 and (found := struct.unpack(">I", head[:4])[0]) != magic:  # before the length: a short
        kind = "a label" if magic == LABELS else "an image"  # label file where images belong is the wrong file
        raise CorruptDataError(f"{path}: bad IDX magic number {found} (expected {magic} for {kind} file)")
    if len(head) < 4 + 4 * ndim:
        raise CorruptDataError(f"{path}: truncated IDX header ({len(head)} bytes)")
    return struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])


def read_idx_header(path: Path, magic: int) -> tuple[int, ...]:
    """The dimensions of an IDX file, reading only its header (cheap, also for .gz)."""
    path = Path(path)
    try:
        with _open(path) as f:
            return _parse_header(f.read(4 + 4 * _NDIM[magic]), path, magic)
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptDataError(f"{path}: unreadable ({err})") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array of an IDX file whose magic number must be `magic` (2049 labels, 2051 images).

    Raises CorruptDataError naming the file on a wrong magic or a payload whose length is not exactly
    the product of the dimensions.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptDataError(f"{path}: unreadable ({err})") from None
    dims = _parse_header(raw, path, magic)
    offset, expected = 4 + 4 * len(dims), math.prod(dims)
    if len(raw) - offset != expected:
        raise CorruptDataError(f"{path}: payload of {len(raw) - offset} bytes, expected {expected} "
                               f"for dimensions {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)
