"""The typer application and what every command shares: consoles and one-line errors."""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import signal
import sys
import threading
import traceback
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer._click import exceptions as click_errors  # typer's own copy of click

from reglab.config import ConfigError
from reglab.errors import one_line
from reglab.provenance import COMMAND_VARIABLE

app = typer.Typer(
    name="reglab",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is literal: `[default: …]` stays visible
)
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)



def print_table(table: Table) -> None:
    """Print a wide table; off a terminal (logs, pipes) use 200 columns rather than rich's 80."""
    (console if console.is_terminal else Console(width=max(console.width, 200))).print(table)


# Errors that are the user's input, not a bug: reported in one line, exit code 2. A `ConfigError`
# names the field, file or value; FileNotFoundError is raised for paths the user gave.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError, PermissionError, NotADirectoryError,
                                                IsADirectoryError)
"""Errors that say what is wrong with the user's input or machine (a value, a path): one line, exit code 2."""
RESUME_HINT = "rerun the same command to resume: finished epochs and runs are kept"
INTERRUPT_HINTS = {"reproduce": "a reproduction writes its results when it finishes (seed000 keeps its study's "
                                "finished runs); rerun the same command to run it again",
                   "analyze": "an analysis writes its results when it finishes; rerun the same command to run it "
                              "again (the run is untouched)"}
"""What an interrupted command keeps, where it is not `RESUME_HINT`."""


@app.callback()
def root(debug: Annotated[bool, typer.Option("--debug", help="show the full traceback of an internal error")]
         = False) -> None:
    """A laboratory for neural-network regularization: train, compare over seeds, explain."""
    global DEBUG
    DEBUG = debug


DEBUG = False


def error_line(text: str) -> None:
    """One unwrapped line on stderr, whatever the width of the terminal or pipe."""
    err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, markup=True, emoji=False,
                      soft_wrap=True)


def where(err: BaseException) -> str:
    """``file:line in function`` of the innermost frame of `err`'s traceback."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "unknown location"
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM ends the command like Ctrl-C does: runs stop, finished work is kept."""
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point: run the app; input errors become one line on stderr (exit 2),
    internal errors say what failed and where (exit 1; `--debug` shows the traceback)."""
    global DEBUG
    DEBUG = False
    previous = signal.signal(signal.SIGTERM, _terminate)
    outer_command = os.environ.get(COMMAND_VARIABLE)
    os.environ[COMMAND_VARIABLE] = shlex.join(["reglab", *sys.argv[1:]])  # what stored results record
    try:
        code = app(standalone_mode=False)  # returns the exit code; Ctrl-C and SIGTERM give 130
    except click_errors.NoArgsIsHelpError as err:
        print(err.ctx.get_help())
        code = 0
    except click_errors.ClickException as err:
        hint = f" (see `{err.ctx.command_path} --help`)" if getattr(err, "ctx", None) else ""
        error_line(err.format_message() + hint)
        code = err.exit_code
    except typer.Abort:
        code = 130
    except USER_ERRORS as err:
        error_line(str(err))
        code = 2
    except Exception as err:
        if DEBUG:
            traceback.print_exc()
        error_line(f"internal error, not a problem with your input: {one_line(err)} (at {where(err)}); "
                   "rerun with `reglab --debug …` for the traceback and report it")
        code = 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if outer_command is None:
            os.environ.pop(COMMAND_VARIABLE, None)
        else:
            os.environ[COMMAND_VARIABLE] = outer_command
    if code == 130:
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
        err_console.print(f"interrupted; {INTERRUPT_HINTS.get(command, RESUME_HINT)}", highlight=False,
                          soft_wrap=True)
    sys.exit(code or 0)


def run() -> None:
    """The `reglab` console script: `main()`, then exit without Python's teardown of the imported
    libraries, which takes about 1 s once torch is imported and saves nothing (the fork server of
    `reglab.study.workers` leaves the same way). The exit handlers still run first (trackers flush,
    a local Ray stops, worker processes are joined) and the standard streams are flushed. While
    another non-daemon thread runs, Python exits as usual, waiting for it."""
    try:
        main()
    except SystemExit as done:
        if not isinstance(done.code, int) or any(
                t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
            raise
        code = done.code
    atexit._run_exitfuncs()  # what interpreter shutdown would run, in its order
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # e.g. a closed pipe: nothing left to deliver
            stream.flush()
    os._exit(code)
