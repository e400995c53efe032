"""Reproductions of the dropout-theory experiments: ``reglab reproduce <name> [--quick]``.

Each preset re-runs one experiment of Zhang & Xu 2022 (*Implicit regularization of dropout*,
arXiv:2207.05952) — or, for ``seed000``, the project's own study — and writes PNG figures, a
``results.json``, a self-contained ``report.html`` and a ``README.md`` comparing what it measured with
what the source reports (see docs/reproduce.md).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from reglab.reproduce.framework import Claim, Outcome, Preset, Settings, get_preset, presets


def run(name: str, settings: Settings = Settings(), out: str | Path | None = None) -> dict[str, Any]:
    """Run the reproduction `name` and write its files to `out` (default ``reproductions/<name>``)."""
    from reglab.reproduce import output

    chosen = get_preset(name)
    settings = dataclasses.replace(settings, out=Path(out) if out is not None else Path("reproductions") / name)
    start = time.perf_counter()
    outcome = chosen.run(settings)
    return output.write(chosen, outcome, settings, settings.out, time.perf_counter() - start)


__all__ = ["Claim", "Outcome", "Preset", "Settings", "get_preset", "presets", "run"]
