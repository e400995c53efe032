"""Benchmarks: reglab against the plain PyTorch loop a user would write, run alternately in one process.

Each benchmark prints its table; with ``OUT=dir`` it also stores it (`stored`): ``dir/<name>.txt`` and
``dir/<name>.json`` with the printed table, the command, the environment and the code version
(`reglab.provenance.record`), so a number quoted from it can be traced and regenerated.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def bench_sha256() -> str:
    """SHA-256 over the benchmark code (each file's name and bytes, in name order), which reglab's
    sources hash does not cover: with git's "+ local changes" it tells which benchmark code ran."""
    digest = hashlib.sha256()
    for path in sorted(BENCH.glob("*.py")) + sorted(BENCH.glob("*.sh")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def record(devices: list[str] | None = None) -> dict:
    """`reglab.provenance.record`, the benchmark code's hash added to the code version; `devices`
    default to the ones this process used (CUDA where it was initialised, else the CPU)."""
    import torch

    from reglab import provenance

    data = provenance.record(devices or (["cuda"] if torch.cuda.is_initialized() else ["cpu"]))
    data["code"] = {**data["code"], "bench_sha256": bench_sha256()}
    return data


def stored(main: Callable[[], None], name: str) -> None:
    """Run a benchmark's `main`; with ``OUT`` set, store what it printed with its provenance."""
    out = os.environ.get("OUT")
    if not out:
        main()
        return
    from reglab.provenance import COMMAND_VARIABLE

    os.environ.setdefault(COMMAND_VARIABLE, shlex.join(["python", "-m", f"bench.{name}", *sys.argv[1:]]))
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        main()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(tee.copy.getvalue())
    (folder / f"{name}.json").write_text(json.dumps({"output": tee.copy.getvalue(), **record()}, indent=1))
