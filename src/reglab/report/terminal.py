"""The study table for the terminal (rich)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from reglab.report.tables import Rows

VERDICT_STYLE = {"better": "bold green", "worse": "bold red", "baseline": "bold"}


def rich_table(rows: Rows, title: str = "", caption: str = "") -> Table:
    table = Table(title=escape(title), caption=escape(caption) or None, caption_justify="left")
    for i, key in enumerate(rows[0] if rows else []):
        table.add_column(escape(key), justify="left" if i == 0 or key == "verdict" else "right",
                         overflow="fold", min_width=12 if key == "verdict" else None)
    for row in rows:
        table.add_row(*(f"[{VERDICT_STYLE.get(v.split(' ', 1)[0], 'dim')}]{escape(v)}[/]" if k == "verdict"
                        else escape(str(v)) for k, v in row.items()))
    return table
