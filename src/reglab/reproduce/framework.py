"""The shared frame of every reproduction: settings in, an `Outcome` (figures, numbers, claims) out.

A preset is a function ``run(settings) -> Outcome`` registered with `@preset`; `reglab.reproduce.run`
calls it and writes what it returns (see `reglab.reproduce.output`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from reglab.config import ConfigError

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


_PRESETS: dict[str, Preset] = {}


def preset(name: str, *, title: str, where: str, source: str = SOURCE
           ) -> Callable[[Callable[[Settings], Outcome]], Callable]:
    """Decorator registering ``run(settings) -> Outcome`` as the reproduction `name` of `source`."""

    def register(run: Callable[[Settings], Outcome]) -> Callable[[Settings], Outcome]:
        _PRESETS[name] = Preset(name, title, where, run, source)
        return run

    return register


def presets() -> list[Preset]:
    """Every registered reproduction, sorted by name."""
    return [_PRESETS[k] for k in sorted(_PRESETS)]


def get_preset(name: str) -> Preset:
    try:
        return _PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown reproduction {name!r} (available: {', '.join(sorted(_PRESETS))})") from None
