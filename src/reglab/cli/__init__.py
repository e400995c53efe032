"""Command-line interface: `reglab <command>`; each command lives in its own module."""

import reglab.cli.study  # noqa: F401  (register commands: compare, report, export, presets)
from reglab.cli import catalog, train  # noqa: F401  (register commands)
from reglab.cli.app import app, main

__all__ = ["app", "main"]
