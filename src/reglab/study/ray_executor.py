"""`RayExecutor`: every run of a study is a Ray task, on this machine or on a Ray cluster.

The driver submits the tasks, collects their results with `ray.wait` and their per-epoch progress
from a small mailbox actor, and alone calls the `RunEvents` (so alone writes the study store).
A worker process that dies mid-run (killed, node lost) has its task retried up to `max_retries`
times; the retry resumes from the run's last checkpoint in its run directory, which is why a study on
several nodes needs its directory on a filesystem they all share (a node that does not see it fails
its runs). An exception inside a run is not retried: it becomes `failed` with a one-line error and
the study goes on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reglab import provenance
from reglab.config import ConfigError
from reglab.errors import one_line
from reglab.study import executors
from reglab.study.executors import RunEvents, RunTask, deliver, with_device
from reglab.study.workers import usable_cores

POLL_SECONDS = 0.2
FORWARDED = ("REGLAB_DATA",)
"""The driver's environment variables a worker adopts where its own environment lacks them: a worker of
a cluster started by ``ray start`` has that command's environment, not the driver's."""


def import_ray() -> Any:
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("executor ray: needs the ray package: pip install 'reglab[ray]'") from None
    return ray


class Mailbox:
    """A Ray actor holding progress messages from the tasks until the driver takes them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, Any]] = []

    def put(self, item: tuple[str, str, Any]) -> None:
        self.items.append(item)

    def take(self) -> list[tuple[str, str, Any]]:
        items, self.items = self.items, []
        return items


def run_remote(task: RunTask, mailbox: Any, command: str, environ: dict[str, str], sources: str) -> tuple[bool, Any]:
    """The body of a Ray task: train one run (with its own ``train.threads``), reporting progress to
    `mailbox` (runs on a worker). `command`: the driver's command line, which the run records as its
    own; `environ`: the driver's `FORWARDED` variables, each adopted unless the worker sets its own;
    `sources`: the driver's `provenance.sources_sha256`, which the worker's reglab must match."""
    import ray

    os.environ[provenance.COMMAND_VARIABLE] = command
    for name, value in environ.items():
        os.environ.setdefault(name, value)
    # Sent without waiting: Ray lends the CPUs of a task that waits in `ray.get` to other tasks, so a run
    # waiting for each message let more runs train at once than their CPUs allow. They are awaited at the
    # end, so that they reach the mailbox before the result reaches the driver.
    sent = [mailbox.put.remote(("started", task.run_id, None))]
    if not task.run_dir.parent.is_dir():  # the driver created it: this node does not share the study's disk
        outcome = False, (f"run_dir: {task.run_dir.parent} does not exist on node {socket.gethostname()}; "
                          "a study on several nodes needs its directory on a shared filesystem")
    elif (own := provenance.sources_sha256()) != sources:  # one study, one code: Ray ships runs, not code
        outcome = False, (f"code: node {socket.gethostname()} runs other reglab sources than the driver (sha256 "
                          f"{own[:12]} vs {sources[:12]}); install the same reglab on every node")
    else:
        try:
            outcome = True, executors.run_task(
                task, lambda metrics: sent.append(mailbox.put.remote(("epoch", task.run_id, metrics))))
        except Exception as err:  # an application error: recorded as failed, never retried
            outcome = False, one_line(err)
    for ref in sent:  # progress only: a lost mailbox must not fail the run
        with contextlib.suppress(ray.exceptions.RayActorError):
            ray.get(ref)
    return outcome


def auto_address() -> str:
    """The address ``ray.init(address="auto")`` connects to: $RAY_ADDRESS, else the cluster ``ray start``
    last started on this machine, else a Ray running here; a one-line error where there is none."""
    from ray._private.services import canonicalize_bootstrap_address_or_die  # how ray.init resolves it

    try:
        return canonicalize_bootstrap_address_or_die("auto")
    except (ConnectionError, ValueError) as err:
        raise ConfigError(f"address: cannot connect to Ray at 'auto' ({one_line(err)})") from None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) address nothing listens at, or ``auto`` where
    the address it stands for (`auto_address`) is one, before anything is written: `ray.init` would
    retry it for minutes."""
    given, address = address, auto_address() if address == "auto" else address
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"address: expected auto or HOST:PORT (got {address!r})")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        where = repr(given) if given == address else f"{given!r}, that is {address}"
        raise ConfigError(f"address: cannot connect to Ray at {where} ({one_line(err)})") from None


class RayExecutor:
    """Runs each task as a Ray task declaring `cpus_per_run` CPUs and `gpus_per_run` GPUs (may be fractional).

    `address`: a running cluster ("auto" or "HOST:PORT"); without it a local Ray is started with this
    machine's cores and stopped afterwards (inside ``with executor:``, when the block ends). `workers`:
    at most that many runs in flight (default: as many as the cluster's resources allow). `device`
    overrides every task's ``train.device``. `runtime_env` is passed to `ray.init` (e.g.
    ``{"env_vars": {...}}``).
    """

    def __init__(self, workers: int | None = None, *, device: str | None = None, address: str | None = None,
                 cpus_per_run: float = 1.0, gpus_per_run: float = 0.0, max_retries: int = 3,
                 runtime_env: dict[str, Any] | None = None):
        import_ray()
        checks = [("workers", workers, workers is None or workers >= 1, "at least 1"),
                  ("cpus_per_run", cpus_per_run, math.isfinite(cpus_per_run) and cpus_per_run >= 1e-4,
                   "at least 0.0001 (Ray's smallest share)"),
                  ("gpus_per_run", gpus_per_run, math.isfinite(gpus_per_run) and gpus_per_run >= 0, "0 or more"),
                  ("max_retries", max_retries, max_retries >= 0, "0 or more")]
        for name, value, ok, wanted in checks:
            if not ok:
                raise ConfigError(f"{name}: must be {wanted} (got {value})")
        for name, value in (("cpus_per_run", cpus_per_run), ("gpus_per_run", gpus_per_run)):
            if round(value, 4) != value:
                raise ConfigError(f"{name}: Ray shares resources in steps of 0.0001 (got {value})")
        if gpus_per_run > 1 and gpus_per_run != int(gpus_per_run):
            raise ConfigError(f"gpus_per_run: above 1 must be a whole number (got {gpus_per_run})")
        if address not in (None, "local"):
            check_reachable(address)
        self.workers, self.device, self.address = workers, device, address
        self.cpus_per_run, self.gpus_per_run = cpus_per_run, gpus_per_run
        self.max_retries, self.runtime_env = max_retries, runtime_env
        self.held = self.connected = False  # within `with executor:`; Ray connected by this executor
        self.mailbox: Any = None  # the progress mailbox, kept while held

    def __enter__(self) -> RayExecutor:
        """Keep the connection that `execute` makes, and its progress mailbox, until the block ends: a
        search executes once per trial, and each would start Ray again (or a new job, whose workers
        import torch again)."""
        self.held = True
        return self

    def __exit__(self, *_: object) -> None:
        self.held, self.mailbox = False, None
        self._disconnect()

    def execute(self, tasks: Sequence[RunTask], events: RunEvents) -> None:
        if not tasks:
            return
        ray = import_ray()
        if not ray.is_initialized():
            self._connect(ray)
            self.connected = True
        try:
            self._run(ray, [with_device(t, self.device) for t in tasks], events)
        finally:
            if not self.held:
                self._disconnect()

    def _disconnect(self) -> None:
        if self.connected:
            import_ray().shutdown()
            self.connected = False

    def _connect(self, ray: Any) -> None:
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True,
                                   "runtime_env": self.runtime_env}
        if self.address is None:  # "local": a new Ray of our own, even where another one runs
            options |= {"num_cpus": usable_cores(), "include_dashboard": False}
        handler = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(address=self.address or "local", **options)
        except ConnectionError as err:
            raise ConfigError(f"address: cannot connect to Ray at {self.address!r} ({one_line(err)})") from None
        finally:  # ray.init replaces it with an exit of its own; the caller's (the CLI's: as Ctrl-C) is kept
            if callable(handler) and signal.getsignal(signal.SIGTERM) is not handler:
                signal.signal(signal.SIGTERM, handler)

    def _check_fits(self, ray: Any) -> None:
        """Refuse a run size no live node of the cluster has (Ray would wait for one for ever)."""
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        if not any(r.get("CPU", 0) >= self.cpus_per_run and r.get("GPU", 0) >= self.gpus_per_run for r in nodes):
            largest = ", ".join(f"{r.get('CPU', 0):g} CPUs and {r.get('GPU', 0):g} GPUs" for r in nodes) or "none"
            raise ConfigError(f"cpus_per_run, gpus_per_run: no node of the Ray cluster has {self.cpus_per_run:g} "
                              f"CPUs and {self.gpus_per_run:g} GPUs for a run (its live nodes: {largest})")

    def _run(self, ray: Any, tasks: list[RunTask], events: RunEvents) -> None:
        self._check_fits(ray)
        remote = ray.remote(run_remote).options(
            num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=self.max_retries,
            retry_exceptions=False)
        # restarted (empty) if its process dies: progress messages may be lost, runs never; kept while
        # held, as it takes seconds to start (its process imports torch)
        mailbox = self.mailbox or ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(Mailbox).remote()
        if self.held:
            self.mailbox = mailbox
        queued, in_flight = list(reversed(tasks)), {}
        environ = {name: os.environ[name] for name in FORWARDED if os.environ.get(name)}
        sources = provenance.sources_sha256()
        by_id, started, done_ids = {t.run_id: t for t in tasks}, set(), set()
        limit = self.workers or len(tasks)

        def drain() -> None:
            try:
                items = ray.get(mailbox.take.remote())
            except ray.exceptions.RayActorError:  # its process died: messages lost, the runs go on
                return
            for kind, run_id, payload in items:
                if run_id not in by_id:  # a late message of an earlier execute's run
                    continue
                if kind == "started" and run_id not in started:
                    started.add(run_id)
                    events.started(by_id[run_id])
                elif kind == "epoch" and run_id not in done_ids:
                    events.epoch(by_id[run_id], payload)

        try:
            while queued or in_flight:
                while queued and len(in_flight) < limit:
                    task = queued.pop()
                    # absolute, so that a worker whatever its working directory trains into the same place
                    shipped = replace(task, run_dir=task.run_dir.absolute())
                    shipped.run_dir.parent.mkdir(parents=True, exist_ok=True)
                    in_flight[remote.remote(shipped, mailbox, provenance.command(), environ, sources)] = task
                ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=POLL_SECONDS)
                drain()
                for ref in ready:
                    task = in_flight.pop(ref)
                    done_ids.add(task.run_id)
                    # ray.get raises when the worker died more often than max_retries allows
                    deliver(events, task, started, lambda ref=ref: ray.get(ref))
        except BaseException:  # e.g. Ctrl-C: stop the runs still in flight
            for ref in in_flight:
                ray.cancel(ref, force=True)
            raise
