"""What docs/results holds: the committed runs of the reproductions (read without torch or plotting,
so `reglab reproduce --list` stays fast)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[3] / "docs" / "results"


def full_run_time(name: str, results_dir: Path = RESULTS_DIR) -> str:
    """The run time of the committed results of preset `name` ("12 min", "3 min on cuda", "38 min (reduced)"),
    "not run", or "pending rerun" for results older than the claim format."""
    try:
        data = json.loads((results_dir / name / "results.json").read_text())
    except (OSError, ValueError):
        return "not run"
    kind = data.get("budget")
    if kind is None:  # written before the presets followed the sources
        return "pending rerun"
    if kind == "quick":
        return "not run"
    text = duration(data.get("seconds", 0))
    device = data.get("device", "cpu")
    text += "" if device == "cpu" else f" on {device}"
    return text if kind == "full" else f"{text} ({kind})"


def duration(seconds: float) -> str:
    """A run time as the results tables print it: "12 min", or "40 s" under a minute."""
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"
