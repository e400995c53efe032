"""`reglab sweep`: a hyper-parameter grid run as a study on any executor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from reglab.cli.app import app
from reglab.cli.study import Address, Arg, CpusPerRun, GpusPerRun, Log, Opt, default_workers, run_and_report


@app.command()
def sweep(
    source: Annotated[str, Arg(help="the base study: preset name or study TOML file")],
    param: Annotated[list[str], Opt(help="NAME=START:STOP:N (linear, ends included), NAME=log:START:STOP:N "
                                         "or NAME=V1,V2; NAME: dropout, l1, l2, weight_decay/wd, lr, "
                                         "stochastic_depth, label_smoothing, ema or a dotted config path; "
                                         "repeat for a grid")],
    seeds: Annotated[int | None, Opt(help="run seeds 0..N-1 instead of the spec's seeds")] = None,
    out: Annotated[Path | None, Opt(help="study directory [default: studies/<name>_sweep]")] = None,
    device: Annotated[str | None, Opt(help="override every run's device: auto|cpu|cuda|cuda:N")] = None,
    workers: Annotated[int | None, Opt(min=1, help="parallel runs [default: local: 2 with ≥ 2 cores, else 1]")] = None,
    executor: Annotated[str, Opt(help="executor: local or ray (more may be registered)")] = "local",
    address: Address = None,
    cpus_per_run: CpusPerRun = None,
    gpus_per_run: GpusPerRun = None,
    epochs: Annotated[int | None, Opt(help="override every arm's number of epochs")] = None,
    force: Annotated[bool, Opt(help="adopt a changed grid: keep unchanged runs, re-run changed ones, "
                                    "delete removed ones")] = False,
    log: Log = None,
) -> None:
    """Run a grid of hyper-parameters as the arms of a study (base: the study's baseline arm)."""
    from reglab.study import load_spec, make_executor
    from reglab.study.sweep import parse_param, sweep_spec

    spec = sweep_spec(load_spec(source, seeds=seeds, epochs=epochs), [parse_param(p) for p in param])
    runner = make_executor(executor, workers=workers or (default_workers() if executor == "local" else None),
                           device=device, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    run_and_report(spec, out, runner, force=force, log=log)
