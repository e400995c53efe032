"""Exports of a study for a paper: figures as PNG (300 dpi), SVG or PDF, tables as LaTeX (booktabs).

    <study>/report/export/figures/<name>.{png,svg,pdf}
    <study>/report/export/tables/{summary,stability,runs,<metric>}.tex

Each ``.tex`` file is a ``table`` float with a caption and a label ``tab:<study>-<table>``, rendered by
pandas' `Styler.to_latex` with booktabs rules (``\\toprule``, ``\\midrule``, ``\\bottomrule``: add
``\\usepackage{booktabs}``); LaTeX's special characters in cells and headers are escaped, and the
symbols the tables use (± Δ − — α ‖ ₂ | …) are written as LaTeX commands, so the files compile with pdfLaTeX.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from reglab.report.figures import all_figures
from reglab.report.tables import Rows, headline_rows, metric_rows, run_rows, stability_rows
from reglab.study.results import Study, load_study
from reglab.study.stats import METRIC_BY_COLUMN

FIGURE_FORMATS = ("png", "svg", "pdf")
FORMATS = (*FIGURE_FORMATS, "latex")
PNG_DPI = 300
UNDATED = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}
"""No creation date in SVG and PDF files, so that a re-export of the same study gives the same bytes."""

_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "—": "---", "–": "--", "α": r"$\alpha$",
            "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "λ": r"$\lambda$", "<": r"$<$", ">": r"$>$",
            "‖": r"$\|$", "₂": r"\textsubscript{2}", "|": r"\textbar{}"}  # pdfLaTeX's OT1 prints a text | as —
_CAPTION_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _symbols(text: str) -> str:
    """Unicode symbols as LaTeX commands (applied after pandas' escaping)."""
    return "".join(_SYMBOLS.get(c, c) for c in text)


def _caption(text: str) -> str:
    return _symbols("".join(_CAPTION_ESCAPES.get(c, c) for c in text))


def parse_formats(value: str | Sequence[str]) -> list[str]:
    """``"svg,latex"`` or a list -> the checked list of export formats."""
    formats = [f.strip().lower() for f in (value.split(",") if isinstance(value, str) else value) if f.strip()]
    if unknown := [f for f in formats if f not in FORMATS]:
        raise ValueError(f"export: unknown format {unknown[0]!r} (formats: {', '.join(FORMATS)})")
    return formats


def latex_table(rows: Rows, *, caption: str, label: str) -> str:
    """A booktabs ``table`` of display rows; cells and headers escaped for LaTeX."""
    frame = pd.DataFrame(rows)
    styler = (frame.style.hide(axis="index")
              .format(escape="latex", formatter=lambda v: _symbols(str(v)))
              .format_index(escape="latex", axis=1, formatter=lambda v: _symbols(str(v))))
    return styler.to_latex(hrules=True, caption=_caption(caption), label=label, position_float="centering",
                           column_format="l" + "r" * (frame.shape[1] - 1))


def export(study: Study | str | Path, formats: str | Sequence[str], out_dir: str | Path | None = None
           ) -> dict[str, list[Path]]:
    """Write the study's figures and / or tables in `formats` (default `<study>/report/export/`);
    returns the written paths by format."""
    study = study if isinstance(study, Study) else load_study(study)
    formats = parse_formats(formats)
    out = Path(out_dir) if out_dir is not None else study.path / "report" / "export"
    written: dict[str, list[Path]] = {f: [] for f in formats}
    if figure_formats := [f for f in formats if f in FIGURE_FORMATS]:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        for fig in all_figures(study):
            FigureCanvasAgg(fig.figure)
            for fmt in figure_formats:
                path = out / "figures" / f"{fig.name}.{fmt}"
                with matplotlib.rc_context({"svg.hashsalt": "reglab"}):  # fixed clip-path and marker ids
                    fig.figure.savefig(path, format=fmt, dpi=PNG_DPI, metadata=UNDATED.get(fmt))
                written[fmt].append(path)
    if "latex" in formats:
        (out / "tables").mkdir(parents=True, exist_ok=True)
        summary, stability = study.summary(), study.stability()
        def slug(text: str) -> str:
            return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "study"

        tables = [("summary", f"{study.spec.name}: each arm against the baseline {study.baseline}",
                   headline_rows(study, summary, stability)),
                  ("stability", f"{study.spec.name}: stability over seeds", stability_rows(stability)),
                  ("runs", f"{study.spec.name}: every run", run_rows(study))]
        tables += [(m, f"{study.spec.name}: {METRIC_BY_COLUMN[m].label}", metric_rows(study, summary, m))
                   for m in dict.fromkeys(summary["metric"])] if len(summary) else []
        for name, caption, rows in tables:
            if rows:
                path = out / "tables" / f"{name}.tex"
                path.write_text(latex_table(rows, caption=caption, label=f"tab:{slug(study.spec.name)}-{slug(name)}"))
                written["latex"].append(path)
    return written
