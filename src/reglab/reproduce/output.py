"""Writing a reproduction: PNG figures, ``results.json``, a self-contained ``report.html``, a rich table.

    <out>/<figure>.png   one file per figure
    <out>/results.json   {preset, title, figure, source, command (as run), rerun (the command that runs it
                          again), quick, budget, reduced, seconds, settings,
                          choices, numbers, claims, notes, environment, code}; each claim row is
                          {claim, source, reglab, verdict, criterion, checked}
    <out>/report.html    the claims table, notes and every figure (base64 PNG); all text escaped
    <out>/README.md      the same in Markdown, figures linked, with the command and the hardware
"""

from __future__ import annotations

import base64
import io
import json
import math
import shlex
from html import escape
from pathlib import Path
from typing import Any

from rich.markup import escape as rich_escape
from rich.table import Table

from reglab import provenance
from reglab.provenance import NO_GPU, code_version, describe_code, environment
from reglab.report.html import CSS
from reglab.reproduce.framework import Outcome, Preset, Settings

VERDICT_STYLE = {"agree": "bold green", "disagree": "bold red", "not run": "dim"}
VERDICT_CLASS = {"agree": "better", "disagree": "worse", "not run": "muted"}  # colours of reglab.report.html.CSS


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


def command(preset: Preset, settings: Settings) -> str:
    """The command that runs this reproduction again (its budget, device and data; not its --out)."""
    flags = " --quick" if settings.quick else " --reduced" if settings.reduced else ""
    flags += f" --device {shlex.quote(settings.device)}" if settings.device != "cpu" else ""
    flags += f" --data-dir {shlex.quote(str(settings.data_dir))}" if settings.data_dir is not None else ""
    return f"reglab reproduce {preset.name}{flags}"


def budget(outcome: Outcome, settings: Settings) -> str:
    """"quick", "reduced" (a preset that cannot run its full setting here) or "full"."""
    return "quick" if settings.quick else "reduced" if outcome.reduced else "full"


def results(preset: Preset, outcome: Outcome, settings: Settings, seconds: float,
            code: dict[str, Any] | None = None) -> dict[str, Any]:
    return _jsonable({
        "preset": preset.name, "title": preset.title, "figure": preset.figure,
        "source": f"{preset.source}, {preset.where}", "command": provenance.command(),
        "rerun": command(preset, settings),
        "quick": settings.quick, "budget": budget(outcome, settings), "reduced": outcome.reduced,
        "device": settings.device, "seconds": round(seconds, 1), "settings": outcome.settings,
        "choices": outcome.choices, "numbers": outcome.numbers, "claims": [c.row() for c in outcome.claims],
        "notes": outcome.notes, "environment": environment([settings.device]),
        "code": code or code_version(),
    })


def _why(c: dict[str, str]) -> str:
    """Criterion, and for a disagreement what was checked."""
    return c["criterion"] + (f". Checked: {c['checked']}" if c["checked"] else "")


def _md(text: str) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def html_page(data: dict[str, Any], pngs: dict[str, bytes]) -> str:
    rows = "".join(f"<tr><td>{escape(c['claim'])}</td><td>{escape(c['source'])}</td><td>{escape(c['reglab'])}</td>"
                   f'<td class="{VERDICT_CLASS[c["verdict"]]}">{escape(c["verdict"])}</td>'
                   f"<td>{escape(_why(c))}</td></tr>" for c in data["claims"])
    notes = "".join(f"<li>{escape(n)}</li>" for n in data["notes"])
    figures = "".join(f'<figure><img alt="{escape(name)}" src="data:image/png;base64,'
                      f'{base64.b64encode(png).decode("ascii")}"><figcaption>{escape(name)}.png'
                      "</figcaption></figure>" for name, png in pngs.items())
    mode = {"quick": "quick run", "reduced": f"reduced run ({data['reduced']})", "full": "full run"}[data["budget"]]
    settings = escape(json.dumps(data["settings"], indent=2))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>reglab reproduce: {escape(data['preset'])}</title><style>{CSS}</style></head>\n"
            f"<body><main>\n<h1>{escape(data['title'])}</h1>\n"
            f'<p class="meta">{escape(data["source"])} · {mode} · device {escape(data["device"])}</p>\n'
            "<h2>Source vs reglab</h2>\n<table><thead><tr><th>claim</th><th>source</th><th>reglab</th>"
            f"<th>verdict</th><th>criterion / checked</th></tr></thead><tbody>{rows}</tbody></table>\n"
            f"<h2>Notes</h2><ul>{notes}</ul>\n<h2>Figures</h2>{figures}\n"
            f"<h2>Settings</h2><pre>{settings}</pre>\n</main></body></html>\n")


def readme(data: dict[str, Any], figures: list[str]) -> str:
    """README.md of a run: figure, command, hardware, source vs reglab, choices, notes, figures, settings."""
    env = data["environment"]
    rows = "".join("| " + " | ".join(_md(v) for v in (c["claim"], c["source"], c["reglab"], c["verdict"], _why(c)))
                   + " |\n" for c in data["claims"])
    mode = {"quick": "quick version", "reduced": f"reduced: {data['reduced']}", "full": "full version"}
    return "\n".join([
        f"# {data['title']}\n", f"Source: {data['source']}.\n",
        f"Reproduces: {data['figure']}.\n",
        f"Command: `{data['command']}` ({mode[data['budget']]}; {data['seconds']:.0f} s); to run it again: "
        f"`{data.get('rerun', data['command'])}`.\n",
        f"Hardware: {env['cpu']}, {env['cpu cores']} cores, device {data['device']}"
        f"{'' if env.get('gpu', 'none') in ('none', NO_GPU) else ' (' + env['gpu'] + ')'}; torch {env['torch']}, "
        f"Python {env['python']}; {describe_code(data['code'])}.\n",
        "## Source vs reglab\n",
        "| claim | source | reglab | verdict | criterion / checked |\n|---|---|---|---|---|\n" + rows,
        "## Choices where the source is silent\n", *(f"- {k}: {v}" for k, v in data["choices"].items()), "",
        "## Notes\n", *(f"- {n}" for n in data["notes"]), "\n## Figures\n",
        *(f"![{name}]({name}.png)\n" for name in figures),
        "## Settings\n", f"```json\n{json.dumps(data['settings'], indent=2)}\n```\n"])


def write(preset: Preset, outcome: Outcome, settings: Settings, out: Path, seconds: float = 0.0,
          code: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write figures, results.json, report.html and README.md under `out`; returns the results dict.
    `code`: the code version the run started from (default: now)."""
    out.mkdir(parents=True, exist_ok=True)
    pngs = {name: _png(fig) for name, fig in outcome.figures.items()}
    for name, png in pngs.items():
        (out / f"{name}.png").write_bytes(png)
    data = results(preset, outcome, settings, seconds, code)
    (out / "results.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    (out / "report.html").write_text(html_page(data, pngs))
    (out / "README.md").write_text(readme(data, list(pngs)))
    return data


def claims_table(data: dict[str, Any]) -> Table:
    """The short terminal table: the claim, the source's value, reglab's, the verdict."""
    table = Table(title=rich_escape(f"{data['preset']} ({data['figure']}): source vs reglab"),
                  caption=rich_escape(data["source"]), caption_justify="left")
    for column in ("claim", "source", "reglab", "verdict"):
        table.add_column(column, overflow="fold")
    for c in data["claims"]:
        style = VERDICT_STYLE[c["verdict"]]
        table.add_row(rich_escape(c["claim"]), rich_escape(c["source"]), rich_escape(c["reglab"]),
                      f"[{style}]{c['verdict']}[/]")
    return table
