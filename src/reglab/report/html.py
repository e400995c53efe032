"""One self-contained HTML file: inline CSS, figures as base64 PNG, no scripts, nothing fetched.

Every string that comes from the user (study name, description, arm names, errors, the spec) goes
through `html.escape`.
"""

from __future__ import annotations

import base64
from html import escape

from reglab.report.figures import FigureData
from reglab.report.tables import Rows

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#fafbfc}
main{max-width:1320px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:34px 0 10px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}
.meta{color:#5a6475;margin:2px 0 16px}.desc{margin:6px 0}
table{border-collapse:collapse;margin:8px 0 6px;font-size:13px;background:#fff}
th,td{border:1px solid #dde2ea;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#eef1f6;text-align:center;white-space:normal}td:first-child,th:first-child{text-align:left}
td.better{color:#0a7a32;font-weight:600}td.worse{color:#b3261e;font-weight:600}td.muted{color:#6b7485}
td.better,td.worse,td.muted{white-space:normal;min-width:8em;text-align:left}
figure{margin:18px 0;background:#fff;border:1px solid #dde2ea;padding:10px}
figure img{max-width:100%;height:auto;display:block}figcaption{color:#5a6475;font-size:13px;margin-top:6px}
pre{background:#f1f3f7;padding:10px;overflow:auto;font-size:12.5px;border:1px solid #dde2ea}
.note{color:#5a6475;font-size:13px}.scroll{overflow-x:auto}
"""


def table(rows: Rows) -> str:
    """An escaped HTML table; the `verdict` column is coloured."""
    if not rows:
        return '<p class="note">(no rows)</p>'
    head = "".join(f"<th>{escape(k)}</th>" for k in rows[0])
    body = []
    for row in rows:
        cells = []
        for key, value in row.items():
            cls = ""
            if key == "verdict":
                word = str(value).split(" ", 1)[0]
                cls = f' class="{word if word in ("better", "worse") else "muted"}"'
            cells.append(f"<td{cls}>{escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def figure(fig: FigureData, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{escape(fig.name)}"><img alt="{escape(fig.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption><b>{escape(fig.title)}.</b> '
            f"{escape(fig.caption)} Numbers: <code>figures/{escape(fig.name)}.csv</code>."
            "</figcaption></figure>")


def page(*, name: str, description: str, meta: str, sections: list[tuple[str, str]]) -> str:
    """Assemble the page; `sections` are (plain-text title, HTML body) pairs; titles are escaped here."""
    parts = [f"<h2>{escape(title)}</h2>\n{body}" for title, body in sections]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>reglab study: {escape(name)}</title><style>{CSS}</style></head>\n<body><main>\n"
        f"<h1>Study: {escape(name)}</h1>\n"
        + (f'<p class="desc">{escape(description)}</p>\n' if description else "")
        + f'<p class="meta">{escape(meta)}</p>\n' + "\n".join(parts) + "\n</main></body></html>\n"
    )

