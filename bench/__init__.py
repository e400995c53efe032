"""Benchmarks: reglab against the plain PyTorch loop a user would write, run alternately in one process.

Each benchmark prints its table; with ``OUT=dir`` it also stores it (`stored`): ``dir/<name>.txt`` and
``dir/<name>.json`` with the printed table, the command, the environment and the code version
(`reglab.provenance.record`), so a number quoted from it can be traced and regenerated.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def stored(main: Callable[[], None], name: str) -> None:
    """Run a benchmark's `main`; with ``OUT`` set, store what it printed with its provenance."""
    out = os.environ.get("OUT")
    if not out:
        main()
        return
    from reglab.provenance import COMMAND_VARIABLE, record

    os.environ.setdefault(COMMAND_VARIABLE, shlex.join(["python", "-m", f"bench.{name}", *sys.argv[1:]]))
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        main()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(tee.copy.getvalue())
    (folder / f"{name}.json").write_text(json.dumps({"output": tee.copy.getvalue(), **record()}, indent=1))
