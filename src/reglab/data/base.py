"""`TensorData`, the one in-memory form of every data set, and the data errors.

Conventions: inputs are float32, images ``(N, C, H, W)`` and vectors ``(N, D)``; classification
labels are int64 ``(N,)`` with ``num_classes`` set; regression targets are float32 ``(N, k)`` with
``num_classes = None``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import Tensor

from reglab.config import ConfigError


class DataNotFoundError(FileNotFoundError):
    """Data files are missing; the message lists every place looked and how to get the data."""


class CorruptDataError(ConfigError):
    """A data file is malformed (magic, length, counts, checksum); the message names the file
    (a user-facing error: one line from the CLI)."""


@dataclass
class TensorData:
    """A data set as tensors: train, test and an optional validation split, all on one device."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    x_val: Tensor | None = None
    y_val: Tensor | None = None
    num_classes: int | None = None  # None = regression

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x is None and y is None:
                continue
            if x is None or y is None or x.shape[0] != y.shape[0]:
                raise ValueError(f"{self.name}: x_{split} and y_{split} must both be set with equal lengths "
                                 f"(got {None if x is None else tuple(x.shape)}, "
                                 f"{None if y is None else tuple(y.shape)})")
            if x.dtype != torch.float32:
                raise ValueError(f"{self.name}: x_{split} must be float32 (got {x.dtype})")
            if self.num_classes is not None and (y.dtype != torch.int64 or y.dim() != 1):
                raise ValueError(f"{self.name}: y_{split} must be int64 labels of shape (N,) "
                                 f"(got {y.dtype}, {tuple(y.shape)})")
            if self.num_classes is None and (y.dtype != torch.float32 or y.dim() != 2):
                raise ValueError(f"{self.name}: y_{split} must be float32 targets of shape (N, k) "
                                 f"(got {y.dtype}, {tuple(y.shape)})")

    @property
    def task(self) -> Literal["classification", "regression"]:
        return "regression" if self.num_classes is None else "classification"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape, e.g. ``(1, 28, 28)`` or ``(40,)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_outputs(self) -> int:
        return self.num_classes if self.num_classes is not None else self.y_train.shape[1]

    def to(self, device: str | torch.device) -> TensorData:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in moved.items():
            if isinstance(value, Tensor):
                moved[key] = value.to(device)
        return TensorData(**moved)
