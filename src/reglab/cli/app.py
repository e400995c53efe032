"""The typer application and what every command shares: consoles and one-line errors."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    name="reglab",
    help="A laboratory for neural-network regularization: train, compare over seeds, explain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)



def print_table(table: Table) -> None:
    """Print a wide table; off a terminal (logs, pipes) use 200 columns rather than rich's 80."""
    (console if console.is_terminal else Console(width=max(console.width, 200))).print(table)


# Errors that are the user's input, not a bug: reported in one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError)


def main() -> None:
    """Console-script entry point: run the app and turn input errors into one line on stderr."""
    try:
        app()
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        err_console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, markup=True)
        sys.exit(2)
