"""Where a stored result came from: the command, the environment and the code version.

Every stored result records `record()`: a run directory (``provenance.jsonl``, one line each time the
run starts or resumes), a study or search (study.db's ``invocations``, one per ``reglab compare`` /
``tune`` / ``sweep`` on it), an analysis (analysis.json), a reproduction (results.json) and the GPU
benchmark (gpu_bench.json). So any number they hold can be traced to the code and machine that made it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

COMMAND_VARIABLE = "REGLAB_COMMAND"
"""Set by the `reglab` CLI to its own command line, which its worker processes inherit."""

_PACKAGE = Path(__file__).resolve().parent  # src/reglab
NO_GPU = "not used by this process"


def command() -> str:
    """The command line this process works for: the `reglab` CLI's (``REGLAB_COMMAND``), else its argv."""
    return os.environ.get(COMMAND_VARIABLE) or shlex.join(sys.argv)


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(devices: list[str] | None = None) -> dict[str, str]:
    """Versions, CPU, GPU, threads and the devices used; no host name. The GPU is named where this
    process uses CUDA; CUDA is never probed here (even `torch.cuda.is_available` initialises the driver,
    after which processes forked from this one cannot use CUDA)."""
    import torch

    from reglab import __version__

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_initialized() else NO_GPU
    return {
        "reglab": __version__, "python": platform.python_version(), "torch": torch.__version__,
        **{name: _version(name) for name in ("numpy", "scipy", "pandas")},
        "platform": platform.platform(terse=True), "machine": platform.machine(), "cpu": cpu_model(),
        "cpu cores": str(os.cpu_count()), "torch threads": str(torch.get_num_threads()),
        "cuda": torch.version.cuda or "none", "gpu": gpu, "device(s) used": ", ".join(devices) if devices else "—",
    }


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def sources_sha256() -> str:
    """SHA-256 over reglab's sources — its Python modules and the preset TOML files they load (path and
    bytes, in path order): the code version where no git checkout tells it. Computed once per process:
    the code a process runs is the code it imported."""
    digest = hashlib.sha256()
    for path in sorted(p for pattern in ("*.py", "*.toml") for p in _PACKAGE.rglob(pattern)):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.cache
def code_version() -> dict[str, Any]:
    """The reglab version, the hash of its sources and, where reglab runs from its own git checkout
    (``<checkout>/src/reglab``), the commit and whether the checkout had changes, new files included.
    An installed copy inside some other repository gets no commit: that repository's would be wrong."""
    from reglab import __version__

    root = _PACKAGE.parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    own = top is not None and Path(top).resolve() == root and (root / "pyproject.toml").is_file()
    commit = git("rev-parse", "HEAD") if own else None
    status = git("status", "--porcelain", "--", "src", "bench", "pyproject.toml") if commit else None
    return {"reglab": __version__, "git_commit": commit, "git_dirty": bool(status) if commit else None,
            "sources_sha256": sources_sha256()}


def describe_code(code: dict[str, Any]) -> str:
    """One line: the commit (with "+ local changes") or "no git checkout", and the sources' hash."""
    commit = code.get("git_commit")
    where = f"commit {commit[:12]}{' + local changes' if code.get('git_dirty') else ''}" if commit else \
        "no git checkout"
    return f"reglab {code.get('reglab', '?')}, {where}, sources sha256 {str(code.get('sources_sha256'))[:16]}…"


def record(devices: list[str] | None = None) -> dict[str, Any]:
    """What a stored result records about its making: UTC time, command, environment, code version."""
    return {"time": datetime.now(UTC).isoformat(timespec="seconds"), "command": command(),
            "environment": environment(devices), "code": code_version()}
