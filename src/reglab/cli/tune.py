"""`reglab tune` (search with seeds as replicates) and `reglab sweep` (its grid case)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from reglab.cli.app import app, console, err_console
from reglab.cli.options import PathOpt
from reglab.cli.study import (
    Address,
    Arg,
    CpusPerRun,
    GpusPerRun,
    Log,
    Opt,
    Sets,
    default_workers,
    print_table,
    runs_start_here,
    with_assignments,
)

if TYPE_CHECKING:
    from reglab.study.tune import TuneResult

Params = Annotated[list[str], Opt(help="NAME=START:STOP:N (linear, ends included), NAME=log:START:STOP:N "
                                       "or NAME=V1,V2; NAME: dropout, l1, l2, weight_decay/wd, lr, "
                                       "stochastic_depth, label_smoothing, ema, swa, input_noise or a dotted "
                                       "config path; repeat for several")]
Seeds = Annotated[int | None, Opt(help="seeds 0..N-1 per configuration instead of the spec's seeds")]
Device = Annotated[str | None, Opt(help="override every run's device: auto|cpu|cuda|cuda:N")]
Workers = Annotated[int | None, Opt(min=1, help="parallel runs [default: local: 2 with ≥ 2 cores, else 1]")]
Executor = Annotated[str, Opt(help="executor: local or ray (more may be registered)")]
Epochs = Annotated[int | None, Opt(help="override every run's number of epochs")]


def note_test_selection(metric: str) -> None:
    """Say so when a search ranks its configurations on the test set."""
    if metric.startswith("test_"):
        err_console.print(f"note: --metric {metric} chooses on the test set, which then no longer measures the "
                          "winner without bias; set data.val_split and use --metric val_acc (or val_loss), and "
                          "confirm on fresh seeds with `reglab compare --best-of`", highlight=False, soft_wrap=True)


def _report(result: TuneResult, metric: str) -> None:
    """Write the report, print the summary and the best configuration (with a note when `metric` ranked
    on the test set); exit 1 if a run failed."""
    from reglab.report import summary_table, write_report

    paths = write_report(result.study)
    result.tracker.log_report(paths["html"].parent)
    print_table(summary_table(result.study))
    best = result.best
    if best is not None:
        console.print(f"best: {escape(best['arm'])} — {best['objective']} {best['metric']} {best['value']:.4g}, "
                      f"mean {best['mean']:.4g} [{best['ci_low']:.4g}, {best['ci_high']:.4g}] over {best['n']} seeds",
                      highlight=False, soft_wrap=True)
    else:
        err_console.print("[yellow]no trial completed[/]: each trial's note in the report says why")
    note_test_selection(metric)
    console.print(f"ran {len(result.executed)} runs, kept {len(result.skipped)} finished ones\n"
                  f"report: {escape(str(paths['html']))}", highlight=False, soft_wrap=True)
    failed = result.study.runs[result.study.runs["status"] == "failed"]
    for _, run in failed.iterrows():
        err_console.print(f"[red]{escape(run['run_id'])} failed:[/] {escape(str(run['error']))}", soft_wrap=True)
    if len(failed):
        raise typer.Exit(1)


def _run(source: str, settings_kwargs: dict, *, seeds: int | None, epochs: int | None, sets: list[str] | None,
         out: Path | None, default_out: str, device: str | None, workers: int | None, executor: str, force: bool,
         ray_options: dict, log: str | None) -> None:
    from reglab.cli.options import check_data, check_device, check_paths
    from reglab.study import load_spec, make_executor
    from reglab.study.spec import arm_slug
    from reglab.study.sweep import parse_param
    from reglab.study.tune import TuneSettings, run_tune

    spec = with_assignments(load_spec(source, seeds=seeds, epochs=epochs), sets)
    params = [parse_param(p) for p in settings_kwargs.pop("param")]
    settings = TuneSettings(params, **settings_kwargs)
    here = runs_start_here(executor, ray_options["address"])
    check_device(device, here=here)
    if here:  # the paths, data and device the base config names must be here
        check_paths(spec.arm_config(spec.baseline, 0))
        check_data(spec.arm_config(spec.baseline, 0))
        check_device(device or spec.arm_config(spec.baseline, 0).train.device)
    workers = workers or (default_workers() if executor == "local" else None)
    runner = make_executor(executor, workers=workers, device=device, **ray_options)
    result = run_tune(spec, settings, out or Path("studies") / arm_slug(default_out.format(name=spec.name)),
                      executor=runner, wave=workers if settings.pruner != "none" else None, force=force,
                      log=lambda line: err_console.print(escape(line), highlight=False, soft_wrap=True), sinks=log)
    _report(result, settings.metric)


@app.command()
def tune(
    source: Annotated[str, Arg(help="the base study: preset name or study TOML file (its baseline arm is tuned)")],
    param: Params,
    sampler: Annotated[str, Opt(help="grid | random | tpe")] = "tpe",
    trials: Annotated[int | None, Opt(help="trials to finish [default: grid: its size; else 20]")] = None,
    metric: Annotated[str, Opt(help="epoch metric to optimise, e.g. val_acc (set data.val_split) or "
                                    "test_loss; losses are minimised")] = "test_acc",
    objective: Annotated[str, Opt(help="aggregate over a trial's seeds: mean | iqm")] = "mean",
    pruner: Annotated[str, Opt(help="none | median | asha (checked between waves of seeds)")] = "none",
    sampler_seed: Annotated[int, Opt(help="seed of the sampler")] = 0,
    seeds: Seeds = None,
    out: Annotated[Path | None, PathOpt(help="study directory [default: studies/<name>_tune]")] = None,
    device: Device = None,
    workers: Workers = None,
    executor: Executor = "local",
    address: Address = None,
    cpus_per_run: CpusPerRun = None,
    gpus_per_run: GpusPerRun = None,
    epochs: Epochs = None,
    set_: Sets = None,
    force: Annotated[bool, Opt(help="start a changed search over (finished cells are reused)")] = False,
    log: Log = None,
) -> None:
    """Search hyper-parameters with every configuration run over several seeds (resumable)."""
    _run(source, {"param": param, "sampler": sampler, "trials": trials, "metric": metric, "objective": objective,
                  "pruner": pruner, "seed": sampler_seed}, seeds=seeds, epochs=epochs, sets=set_, out=out,
         default_out="{name}_tune", device=device, workers=workers, executor=executor, force=force,
         ray_options={"address": address, "cpus_per_run": cpus_per_run, "gpus_per_run": gpus_per_run}, log=log)


@app.command()
def sweep(
    source: Annotated[str, Arg(help="the base study: preset name or study TOML file")],
    param: Params,
    seeds: Seeds = None,
    out: Annotated[Path | None, PathOpt(help="study directory [default: studies/<name>_sweep]")] = None,
    device: Device = None,
    workers: Workers = None,
    executor: Executor = "local",
    address: Address = None,
    cpus_per_run: CpusPerRun = None,
    gpus_per_run: GpusPerRun = None,
    epochs: Epochs = None,
    set_: Sets = None,
    force: Annotated[bool, Opt(help="adopt a changed grid: keep unchanged runs, re-run changed ones, "
                                    "delete removed ones")] = False,
    metric: Annotated[str, Opt(help="epoch metric that ranks the grid (regression: test_loss)")] = "test_acc",
    log: Log = None,
) -> None:
    """Run a grid of hyper-parameters over seeds (`reglab tune --sampler grid`; base: the baseline arm)."""
    from reglab.study import load_spec

    name = load_spec(source).name
    _run(source, {"param": param, "sampler": "grid", "metric": metric, "name": f"{name} sweep"}, seeds=seeds,
         epochs=epochs, sets=set_, out=out, default_out="{name}_sweep", device=device, workers=workers,
         executor=executor, force=force,
         ray_options={"address": address, "cpus_per_run": cpus_per_run, "gpus_per_run": gpus_per_run}, log=log)
