"""Reader of the CIFAR binary releases ("binary version suitable for C programs", Krizhevsky 2009).

A file is a sequence of fixed-size records, no header:

* CIFAR-10: 1 label byte, then 3072 pixel bytes;
* CIFAR-100: 1 coarse-label byte, 1 fine-label byte, then 3072 pixel bytes.

The pixels are channel-major: 1024 red, 1024 green, 1024 blue, each 32×32 row-major.
"""

from __future__ import annotations

import numpy as np

from reglab.data.base import CorruptDataError

PIXELS = 3 * 32 * 32


def parse_cifar(buf: bytes, *, label_bytes: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N, label_bytes)`` uint8 from one binary file.

    `label_bytes` is 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine). Raises CorruptDataError naming
    `source` when the length is not a positive multiple of the record size.
    """
    record = label_bytes + PIXELS
    if not buf or len(buf) % record:
        raise CorruptDataError(f"{source}: {len(buf)} bytes is not a positive multiple of the "
                               f"{record}-byte CIFAR record")
    rows = np.frombuffer(buf, dtype=np.uint8).reshape(-1, record)
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), rows[:, :label_bytes]
