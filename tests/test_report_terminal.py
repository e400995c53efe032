"""The study table printed on the terminal: names are shown as written (never read as rich markup) and
each verdict is coloured by its first word."""

import io

from rich.console import Console

from reglab.report.terminal import rich_table

ROWS = [{"arm": "base", "[i]metric[/i]": "90.00%", "verdict": "baseline"},
        {"arm": "[red]wd[/red]", "[i]metric[/i]": "91.00%", "verdict": "better (p = 0.01)"},
        {"arm": "l2", "[i]metric[/i]": "89.00%", "verdict": "worse (p = 0.02)"},
        {"arm": "ema", "[i]metric[/i]": "90.10%", "verdict": "no difference"}]


def render(table, *, colour: bool) -> str:
    out = io.StringIO()
    Console(file=out, width=200, force_terminal=colour, color_system="standard" if colour else None,
            emoji=False).print(table)
    return out.getvalue()


def test_names_titles_and_headers_are_printed_literally():
    text = render(rich_table(ROWS, title="[b]study[/b]", caption="[dim]note[/dim]"), colour=False)
    for literal in ("[red]wd[/red]", "[i]metric[/i]", "[b]study[/b]", "[dim]note[/dim]"):
        assert literal in text, literal


def test_each_verdict_is_coloured_by_its_first_word():
    text = render(rich_table(ROWS), colour=True)
    bold_green, bold_red, dim = "\x1b[1;32m", "\x1b[1;31m", "\x1b[2m"  # ANSI SGR: 1 bold, 2 dim, 32 green, 31 red
    assert bold_green + "better (p = 0.01)" in text
    assert bold_red + "worse (p = 0.02)" in text
    assert dim + "no difference" in text
