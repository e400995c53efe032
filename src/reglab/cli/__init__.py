"""Command-line interface: `reglab <command>`; each command lives in its own module."""

import reglab.cli.reproduce  # noqa: F401  (register command: reproduce)
import reglab.cli.study  # noqa: F401  (register commands: compare, report, export, presets)
from reglab.cli import analyze, catalog, train, tune  # noqa: F401  (register commands; tune: tune, sweep)
from reglab.cli.app import app, main, run

__all__ = ["app", "main", "run"]
