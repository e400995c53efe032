"""The shared frame of every reproduction: settings in, an `Outcome` (figures, numbers, claims) out.

A preset is a function ``run(settings) -> Outcome`` registered with `@preset`; `reglab.reproduce.run`
calls it and writes what it returns (see `reglab.reproduce.output`). Each `Claim` is one row of the
comparison with the source: the source's value, reglab's value, the verdict (agree / disagree /
not run), the criterion that decided it and, for a disagreement, what was checked to explain it.
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

SOURCE = ("the chapter Dropout 的隐式正则化 (implicit regularization of dropout) of 理解深度学习 (2023; source 004), "
          "which presents Zhang & Xu 2022, arXiv:2207.05952; figure and table numbers are the chapter's")

#: which figure or table of the sources each preset reproduces (shown by ``reglab reproduce --list``)
FIGURES = {
    "dropout-1d": "Fig. 1.1, 1.8", "condensation": "Fig. 1.2", "teacher-student": "Fig. 1.3 (a, b)",
    "effective-ratio": "Fig. 1.3 (c)", "r1-mnist": "Fig. 1.4", "escape": "Fig. 1.6", "sample-size": "Fig. 1.7",
    "dropout-table": "Table 1.1, Fig. 1.9", "l1-l4": "Fig. 1.10", "interpolation": "Fig. 1.11",
    "seed000": "source 000 (MNIST DeeperCNN), Fig. 1 / Table 1",
}


@dataclass(frozen=True)
class Settings:
    """How a preset runs: `quick` is the small CPU version (seconds, for tests); `reduced` the stated
    reduced budget of a preset too slow for a small CPU (presets without one run in full); `data_dir`
    is searched first for data files; `out` is the output directory (presets that keep runs on disk,
    like studies, put them there)."""

    quick: bool = False
    reduced: bool = False
    device: str = "cpu"
    data_dir: Path | None = None
    out: Path = Path("reproductions")


@dataclass
class Claim:
    """One row of "source vs reglab".

    `claim`: what the source states; `measured`: reglab's value; `agrees`: True/False by `criterion`,
    None when it was not run (missing data, a reduced run that cannot judge it); `source`: the
    source's own number or qualitative statement; `criterion`: the checkable rule behind the verdict;
    `checked`: what was checked to explain a disagreement (kept in the row only for a disagreement).
    """

    claim: str
    measured: str
    agrees: bool | None
    source: str = ""
    criterion: str = ""
    checked: str = ""

    @property
    def verdict(self) -> str:
        return {True: "agree", False: "disagree", None: "not run"}[self.agrees]

    def row(self) -> dict[str, str]:
        """The claim as a results.json row."""
        return {"claim": self.claim, "source": self.source, "reglab": self.measured, "verdict": self.verdict,
                "criterion": self.criterion, "checked": self.checked if self.agrees is False else ""}


@dataclass
class Outcome:
    """What a preset produced: figures by file stem, JSON-able numbers, claims and notes for the report.

    `reduced`: None for a run of the preset's full setting, else what was cut (its results are then
    marked ``"budget": "reduced"``); `choices`: the settings the source leaves open and the values chosen.
    """

    figures: dict[str, Figure] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    reduced: str | None = None


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    where: str  # which experiment of the source
    run: Callable[[Settings], Outcome]
    source: str = SOURCE

    @property
    def figure(self) -> str:
        return FIGURES.get(self.name, "—")


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
