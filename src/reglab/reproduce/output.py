"""Writing a reproduction: PNG figures, ``results.json``, a self-contained ``report.html``, a rich table.

    <out>/<figure>.png   one file per figure
    <out>/results.json   {preset, title, source, command, quick, seconds, settings, numbers, claims, notes,
                          environment}
    <out>/report.html    the claims table, notes and every figure (base64 PNG); all text escaped
    <out>/README.md      the same in Markdown, figures linked, with the command and the hardware
"""

from __future__ import annotations

import base64
import io
import json
import math
import platform
from html import escape
from pathlib import Path
from typing import Any

from rich.markup import escape as rich_escape
from rich.table import Table

from reglab.report.environment import environment
from reglab.report.html import CSS
from reglab.reproduce.framework import Outcome, Preset, Settings

VERDICT_STYLE = {"agree": "bold green", "disagree": "bold red", "n/a": "dim"}
VERDICT_CLASS = {"agree": "better", "disagree": "worse", "n/a": "muted"}  # colours of reglab.report.html.CSS


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _jsonable(value: Any) -> Any:
    """Tensors and arrays as lists, non-finite floats as None (strict JSON)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command(preset: Preset, settings: Settings) -> str:
    flags = " --quick" if settings.quick else ""
    flags += f" --device {settings.device}" if settings.device != "cpu" else ""
    return f"reglab reproduce {preset.name}{flags}"


def results(preset: Preset, outcome: Outcome, settings: Settings, seconds: float) -> dict[str, Any]:
    return _jsonable({
        "preset": preset.name, "title": preset.title, "source": f"{preset.source}, {preset.where}",
        "command": command(preset, settings), "quick": settings.quick, "device": settings.device,
        "seconds": round(seconds, 1), "settings": outcome.settings,
        "numbers": outcome.numbers,
        "claims": [{"claim": c.claim, "measured": c.measured, "verdict": c.verdict} for c in outcome.claims],
        "notes": outcome.notes, "environment": {**environment([settings.device]), "cpu": cpu_model()},
    })


def html_page(data: dict[str, Any], pngs: dict[str, bytes]) -> str:
    rows = "".join(f"<tr><td>{escape(c['claim'])}</td><td>{escape(c['measured'])}</td>"
                   f'<td class="{VERDICT_CLASS[c["verdict"]]}">{escape(c["verdict"])}</td></tr>'
                   for c in data["claims"])
    notes = "".join(f"<li>{escape(n)}</li>" for n in data["notes"])
    figures = "".join(f'<figure><img alt="{escape(name)}" src="data:image/png;base64,'
                      f'{base64.b64encode(png).decode("ascii")}"><figcaption>{escape(name)}.png'
                      "</figcaption></figure>" for name, png in pngs.items())
    mode = "quick (reduced) run" if data["quick"] else "full run"
    settings = escape(json.dumps(data["settings"], indent=2))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>reglab reproduce: {escape(data['preset'])}</title><style>{CSS}</style></head>\n"
            f"<body><main>\n<h1>{escape(data['title'])}</h1>\n"
            f'<p class="meta">{escape(data["source"])} · {mode} · device {escape(data["device"])}</p>\n'
            "<h2>Measured vs reported by the source</h2>\n<table><thead><tr><th>source</th><th>measured</th>"
            f"<th>verdict</th></tr></thead><tbody>{rows}</tbody></table>\n"
            f"<h2>Notes</h2><ul>{notes}</ul>\n<h2>Figures</h2>{figures}\n"
            f"<h2>Settings</h2><pre>{settings}</pre>\n</main></body></html>\n")


def readme(data: dict[str, Any], figures: list[str]) -> str:
    """README.md of a run: command, hardware, measured vs reported, notes, figures, settings."""
    env = data["environment"]
    rows = "".join(f"| {c['claim']} | {c['measured']} | {c['verdict']} |\n" for c in data["claims"])
    return "\n".join([
        f"# {data['title']}\n", f"Source: {data['source']}.\n",
        f"Command: `{data['command']}` ({'quick, reduced' if data['quick'] else 'full'} version; "
        f"{data['seconds']:.0f} s).\n",
        f"Hardware: {env['cpu']}, {env['cpu cores']} cores, device {data['device']}; torch {env['torch']}, "
        f"reglab {env['reglab']}, Python {env['python']}.\n",
        "## Measured vs reported by the source\n", "| source | measured | verdict |\n|---|---|---|\n" + rows,
        "## Notes\n", *(f"- {n}" for n in data["notes"]), "\n## Figures\n",
        *(f"![{name}]({name}.png)\n" for name in figures),
        "## Settings\n", f"```json\n{json.dumps(data['settings'], indent=2)}\n```\n"])


def write(preset: Preset, outcome: Outcome, settings: Settings, out: Path, seconds: float = 0.0
          ) -> dict[str, Any]:
    """Write figures, results.json, report.html and README.md under `out`; returns the results dict."""
    out.mkdir(parents=True, exist_ok=True)
    pngs = {name: _png(fig) for name, fig in outcome.figures.items()}
    for name, png in pngs.items():
        (out / f"{name}.png").write_bytes(png)
    data = results(preset, outcome, settings, seconds)
    (out / "results.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    (out / "report.html").write_text(html_page(data, pngs))
    (out / "README.md").write_text(readme(data, list(pngs)))
    return data


def claims_table(data: dict[str, Any]) -> Table:
    """The short terminal table: the source's claim, our number, agree / disagree."""
    table = Table(title=rich_escape(f"{data['preset']}: measured vs reported"),
                  caption=rich_escape(data["source"]), caption_justify="left")
    for column in ("source", "measured", "verdict"):
        table.add_column(column, overflow="fold")
    for c in data["claims"]:
        style = VERDICT_STYLE[c["verdict"]]
        table.add_row(rich_escape(c["claim"]), rich_escape(c["measured"]), f"[{style}]{c['verdict']}[/]")
    return table
