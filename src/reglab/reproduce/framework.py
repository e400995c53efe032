"""The shared frame of every reproduction: settings in, an `Outcome` (figures, numbers, claims) out.

A preset is a function ``run(settings) -> Outcome`` registered with `@preset`; `reglab.reproduce.run`
calls it and writes what it returns (see `reglab.reproduce.output`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reglab.config import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SOURCE = "Zhang & Xu 2022, Implicit regularization of dropout, arXiv:2207.05952"


@dataclass(frozen=True)
class Settings:
    """How a preset runs: `quick` is the small CPU version; `data_dir` is searched first for data files;
    `out` is the output directory (presets that keep runs on disk, like studies, put them there)."""

    quick: bool = False
    device: str = "cpu"
    data_dir: Path | None = None
    out: Path = Path("reproductions")


@dataclass
class Claim:
    """One row of "measured vs reported": the source's claim as text, our number, and whether they agree
    (None: the source gives no number or direction to compare with)."""

    claim: str
    measured: str
    agrees: bool | None

    @property
    def verdict(self) -> str:
        return {True: "agree", False: "disagree", None: "n/a"}[self.agrees]


@dataclass
class Outcome:
    """What a preset produced: figures by file stem, JSON-able numbers, claims and notes for the report."""

    figures: dict[str, Figure] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    where: str  # which experiment of the source
    run: Callable[[Settings], Outcome]
    source: str = SOURCE


@dataclass(frozen=True)
class PresetInfo:
    """A catalog entry (reglab.reproduce.experiments.CATALOG): the module that runs it and its texts."""

    module: str
    title: str
    where: str
    source: str = SOURCE


_RUNS: dict[str, Callable[[Settings], Outcome]] = {}


def preset(name: str) -> Callable[[Callable[[Settings], Outcome]], Callable]:
    """Decorator registering ``run(settings) -> Outcome`` as the reproduction `name` of the catalog."""

    def register(run: Callable[[Settings], Outcome]) -> Callable[[Settings], Outcome]:
        _RUNS[name] = run
        return run

    return register


def _catalog() -> dict[str, PresetInfo]:
    from reglab.reproduce.experiments import CATALOG

    return CATALOG


def _runner(name: str, info: PresetInfo) -> Callable[[Settings], Outcome]:
    """``run(settings)`` of `name`, importing its module (torch, matplotlib) only when called."""

    def run(settings: Settings) -> Outcome:
        importlib.import_module(f"reglab.reproduce.experiments.{info.module}")
        return _RUNS[name](settings)

    return run


def presets() -> list[Preset]:
    """Every reproduction of the catalog, sorted by name (nothing heavy is imported)."""
    return [get_preset(name) for name in sorted(_catalog())]


def get_preset(name: str) -> Preset:
    catalog = _catalog()
    if name not in catalog:
        raise ConfigError(f"unknown reproduction {name!r} (available: {', '.join(sorted(catalog))})")
    info = catalog[name]
    return Preset(name, info.title, info.where, _runner(name, info), info.source)
