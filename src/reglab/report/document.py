"""A report as one list of titled sections, written alike as a self-contained HTML page and as Markdown.

Both files come from the same `Section`s, so they cannot drift apart: what one shows, the other does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import escape

from reglab.report import html
from reglab.report.figures import FigureData
from reglab.report.tables import Rows, markdown_table, md_text


@dataclass(frozen=True)
class Section:
    """One titled part of a report, shown in this order: a paragraph, tables (each under an optional
    sub-title), figures, a data structure as JSON (the spec), a footnote."""

    title: str
    text: str = ""
    tables: tuple[tuple[str, Rows], ...] = ()
    figures: tuple[tuple[FigureData, bytes], ...] = ()
    data: object = None
    note: str = ""


def table_section(title: str, rows: Rows, note: str = "") -> Section:
    return Section(title, tables=(("", rows),), note=note)


def _json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def html_page(*, name: str, description: str, meta: str, sections: list[Section]) -> str:
    def body(s: Section) -> str:
        return "".join([
            f"<p>{escape(s.text)}</p>" if s.text else "",
            *((f"<h3>{escape(sub)}</h3>" if sub else "") + html.table(rows) for sub, rows in s.tables),
            *(html.figure(fig, png) for fig, png in s.figures),
            f"<pre>{escape(_json(s.data))}</pre>" if s.data is not None else "",
            f'<p class="note">{escape(s.note)}</p>' if s.note else ""])

    return html.page(name=name, description=description, meta=meta,
                     sections=[(s.title, body(s)) for s in sections])


def _code_block(text: str) -> str:
    """A fenced block no backtick run in `text` can close (CommonMark: the closing fence is at least as long)."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}json\n{text}\n{fence}\n"


def markdown_page(*, name: str, description: str, meta: str, sections: list[Section]) -> str:
    """User text (names, descriptions, table cells) is literal: no HTML, emphasis or links."""
    lines = [f"# Study: {md_text(name)}\n", md_text(description), f"\n{md_text(meta)}\n"]
    for s in sections:
        lines.append(f"## {md_text(s.title)}\n")
        lines += [f"{md_text(s.text)}\n"] if s.text else []
        for sub, rows in s.tables:
            lines += [f"### {md_text(sub)}\n"] if sub else []
            lines.append(markdown_table(rows))
        lines += [f"![{md_text(fig.title)}](figures/{fig.name}.png)\n\n{md_text(fig.caption)}\n"
                  for fig, _ in s.figures]
        lines += [_code_block(_json(s.data))] if s.data is not None else []
        lines += [f"\n{md_text(s.note)}\n"] if s.note else []
    return "\n".join(lines)
