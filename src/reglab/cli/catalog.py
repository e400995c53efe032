"""`reglab datasets` and `reglab models`: what is registered, and what is available here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reglab.cli.app import app, print_table
from reglab.cli.options import PathOpt
from reglab.config import ConfigError


@app.command()
def datasets(
    data_dir: Annotated[Path | None, PathOpt(help="directory searched first for data files")] = None,
) -> None:
    """List every data set, whether it is available here, where it was found, its size, and for a missing
    one the command that gets it."""
    from reglab.data import dataset_status

    if data_dir is not None and not data_dir.is_dir():  # as `reglab train` refuses it
        raise ConfigError(f"--data-dir: {str(data_dir)!r} is not a directory")
    table = Table(title="data sets")
    for column in ("name", "available", "where", "size", "description"):
        table.add_column(column)
    for s in dataset_status(data_dir):
        where = s.location or (f"missing — run: {s.get}" if s.get else "—")
        table.add_row(s.name, "[green]yes[/]" if s.available else "[red]no[/]", where,
                      s.size or "—", s.description)
    print_table(table)


data_app = typer.Typer(help="Get data sets onto this machine.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def data_fetch(name: Annotated[str, typer.Argument(help="data set name, e.g. fashion-mnist")]) -> None:
    """Fetch a data set into reglab's cache: the official files (SHA-256 checked), else Debian's archive
    (no root needed); prints what was fetched from where."""
    from reglab.data.fetch import fetch_dataset

    typer.echo(fetch_dataset(name))


@app.command()
def models() -> None:
    """List every model with its options."""
    from reglab.models import available_models

    table = Table(title="models")
    for column in ("name", "description", "options"):
        table.add_column(column)
    for m in available_models():
        table.add_row(m.name, m.description, ", ".join(m.options))
    print_table(table)
