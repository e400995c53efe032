"""`reglab reproduce <name> [--quick]`: re-run an experiment of the dropout-theory paper (docs/reproduce.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from reglab.cli.app import app, console, print_table
from reglab.cli.options import PathOpt

Arg, Opt = typer.Argument, typer.Option


@app.command()
def reproduce(
    name: Annotated[str | None, Arg(help="reproduction to run (see --list)")] = None,
    quick: Annotated[bool, Opt(help="small version, well under a minute on a CPU")] = False,
    reduced: Annotated[bool, Opt(help="the preset's stated reduced budget for a small CPU (where it has one)")
                       ] = False,
    out: Annotated[Path | None, PathOpt(help="output directory [default: reproductions/<name>]")] = None,
    device: Annotated[str, Opt(help="training device: cpu|cuda|cuda:N|auto")] = "cpu",
    data_dir: Annotated[Path | None, PathOpt(help="directory searched first for data files")] = None,
    list_: Annotated[bool, Opt("--list", help="list the reproductions and exit")] = False,
) -> None:
    """Run a reproduction: figures, results.json, report.html and a measured-vs-reported table."""
    from reglab.reproduce import Settings, presets, run
    from reglab.reproduce.committed import full_run_time

    if list_ or name is None:
        listing = Table(title="reproductions (reglab reproduce <name> [--quick])",
                        caption="full run: time of the committed docs/results run "
                                "(on a 2-core CPU unless a device is named)")
        for column in ("name", "reproduces", "full run", "what"):
            listing.add_column(column)
        for p in presets():
            listing.add_row(p.name, escape(p.figure), escape(full_run_time(p.name)), escape(p.title))
        print_table(listing)
        return
    from reglab.reproduce.output import claims_table

    out = out or Path("reproductions") / name
    data = run(name, Settings(quick=quick, reduced=reduced, device=device, data_dir=data_dir), out)
    print_table(claims_table(data))
    for note in data["notes"]:
        console.print(f"· {escape(note)}", highlight=False)
    console.print(f"report: {escape(str(out / 'report.html'))}", highlight=False, soft_wrap=True)
