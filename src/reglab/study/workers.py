"""The local pool's worker processes: how they start, what they inherit, when they exit.

Workers fork from a fork server that has imported `PRELOAD` (on Linux; elsewhere they spawn): about
3 s of imports, done once and beside the driver's own start instead of once per worker. This module
imports no torch, so `start_server` can run before the driver imports it. A worker gets the
driver's environment as it is when its pool starts (as a spawned process would, not the server's)
and exits when the driver does.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import select
import sys
import threading
import time
from multiprocessing import forkserver
from typing import Any

PRELOAD = ("torch", "torch._dynamo", "reglab.study.packed", "reglab.study.analysis", "reglab.train",
           "reglab.study.fork_server")
"""What every worker imports before its first run (``torch._dynamo``: the first ``torch.optim``
optimizer imports it), and `reglab.study.fork_server`, which lets the server exit at once."""

messages: Any = None
"""In a worker: the driver's queue for progress messages."""


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of worker processes: on Linux ``forkserver`` preloading `PRELOAD` (the server
    starts on the first call and imports while the caller goes on), elsewhere ``spawn`` (macOS's
    system libraries, which torch loads, are not safe to fork). Neither shares the driver's CUDA
    state or threads."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    forkserver.ensure_running()
    return ctx


def start_server() -> None:
    """Start the fork server now, so that its imports overlap the caller's."""
    worker_context()


def worker_pool(workers: int, queue: Any = None) -> cf.ProcessPoolExecutor:
    """A pool of `workers` worker processes that put progress on `queue` (`messages` in the worker)."""
    return cf.ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=_init_worker,
                                  initargs=(queue, dict(os.environ), os.getpid()))


def report(kind: str, run_id: str, payload: Any = None) -> None:
    """In a worker: one progress message (``"started"``, ``"epoch"``) for the driver."""
    messages.put((kind, run_id, payload))


def _init_worker(queue: Any, environ: dict[str, str], driver_pid: int) -> None:
    global messages
    messages = queue
    os.environ.clear()
    os.environ.update(environ)
    threading.Thread(target=_exit_with_driver, args=(driver_pid,), daemon=True).start()


def _exit_with_driver(driver_pid: int) -> None:
    """A worker must not outlive its driver: a resumed study would write into the same run dir.

    The driver is watched itself, not the worker's parent: a fork server outlives the driver for as
    long as a worker of it lives. A pidfd (Linux) becomes readable when the driver exits; elsewhere
    the driver's pid is polled."""
    try:
        pidfd = os.pidfd_open(driver_pid)
    except (AttributeError, OSError):  # no pidfds here, or the driver is gone already
        while _alive(driver_pid):
            time.sleep(0.5)
    else:
        select.select([pidfd], [], [])
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, as another user
        pass
    return True
