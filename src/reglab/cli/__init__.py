"""Command-line interface: `reglab <command>`; each command lives in its own module."""

from reglab.cli import catalog, train  # noqa: F401  (register commands)
from reglab.cli.app import app, main

__all__ = ["app", "main"]
