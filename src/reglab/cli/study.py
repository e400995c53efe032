"""`reglab compare`, `reglab report`, `reglab export`, `reglab presets`: multi-seed studies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from reglab.cli.app import app, console, err_console, print_table
from reglab.cli.options import PathArg, PathOpt

if TYPE_CHECKING:
    from reglab.study import Executor, StudySpec

Arg, Opt = typer.Argument, typer.Option
Correction = Annotated[str | None, Opt(help="correction across arms vs the baseline: holm or bh "
                                            "[default: the spec's statistics.correction, holm]")]
Target = Annotated[str | None, Opt(metavar="METRIC=VALUE", help="time to target, e.g. test_acc=0.9 "
                                   "(epoch metric; losses: reached when ≤) [default: the spec's statistics.target]")]
Baseline = Annotated[str | None, Opt(metavar="ARM", help="the arm the others are compared with (re-runs nothing) "
                                     "[default: the spec's baseline]")]


def with_statistics(spec: StudySpec, correction: str | None, target: str | None,
                    baseline: str | None = None) -> StudySpec:
    """`spec` with `--correction` / `--target` / `--baseline` applied (they change how it is compared, no run)."""
    from reglab.study.target import parse_target

    if correction is not None and correction not in ("holm", "bh"):
        raise typer.BadParameter(f"expected holm or bh (got {correction!r})", param_hint="--correction")
    if baseline is not None and baseline not in spec.arms:
        raise typer.BadParameter(f"{baseline!r} is not an arm of {spec.name} (arms: {', '.join(spec.arms)})",
                                 param_hint="--baseline")
    return spec.with_statistics(correction=correction, target=parse_target(target) if target else None,
                                baseline=baseline)


def with_assignments(spec: StudySpec, assignments: list[str] | None) -> StudySpec:
    """`spec` with ``--set KEY=VALUE`` applied to its base and to every arm that sets KEY itself
    (`StudySpec.override`), as ``--epochs`` is."""
    from reglab.cli.options import parse_assignments
    from reglab.config import ConfigError

    if not assignments:
        return spec
    overrides = parse_assignments(assignments)
    try:
        return spec.override(overrides)
    except ConfigError as err:
        raise ConfigError(f"--set: {err}") from None


def default_workers() -> int:
    """Two worker processes where there are at least two cores, else one."""
    from reglab.study.workers import usable_cores

    return 2 if usable_cores() >= 2 else 1


def runs_start_here(executor: str, address: str | None) -> bool:
    """Whether the runs train on this machine: with every executor but Ray on a cluster (`--address`)."""
    return executor != "ray" or address in (None, "local")


def spec_source_exists(source: str) -> bool:
    """Whether `source` names a TOML file or a preset (what `load_spec` checks first), without importing torch."""
    from reglab.presets import preset_names

    return Path(source).is_file() or source in preset_names()


# options of the ray executor, shared by `reglab compare`, `reglab sweep` and `reglab tune`
Address = Annotated[str | None, Opt(help="ray: the cluster to join, auto or HOST:PORT [default: start a local Ray]")]
CpusPerRun = Annotated[float | None, Opt(help="ray: CPUs each run declares [default: 1]")]
GpusPerRun = Annotated[float | None, Opt(help="ray: GPUs each run declares; fractions share a GPU, e.g. 0.25 "
                                              "[default: 0]")]
# run-config overrides, shared by `reglab compare`, `reglab sweep` and `reglab tune`
Sets = Annotated[list[str] | None, Opt("--set", metavar="KEY=VALUE", help="override of every run's config, e.g. "
                                       "train.compile=true (repeatable)")]
# experiment tracking, shared by `reglab compare`, `reglab sweep` and `reglab tune`
Log = Annotated[str | None, Opt(metavar="SINKS", help="log runs to tensorboard and/or mlflow, e.g. tensorboard,mlflow "
                                "or mlflow=TRACKING_URI (needs reglab[tracking]) [default: the spec's `log`]")]


def executor_choice(executor: str, pack: str) -> tuple[str, dict]:
    """`--executor` and `--pack` as an executor name and its extra options: packing replaces `local`."""
    from reglab.study.packed import parse_pack

    try:
        size = parse_pack(pack)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--pack") from None
    if executor == "local" and size != "off":
        return "packed", {"pack": size}
    if isinstance(size, int):
        raise typer.BadParameter(f"packing needs --executor local (got {executor!r})", param_hint="--pack")
    return executor, {}


@app.command()
def compare(
    source: Annotated[str, Arg(help="preset name (see `reglab presets`) or study TOML file")] = "quickstart",
    seeds: Annotated[int | None, Opt(help="run seeds 0..N-1 instead of the spec's seeds")] = None,
    out: Annotated[Path | None, PathOpt(help="study directory [default: studies/<name>]")] = None,
    device: Annotated[str | None, Opt(help="override every run's device: auto|cpu|cuda|cuda:N")] = None,
    workers: Annotated[int | None, Opt(min=1, help="parallel runs [default: 2 with ≥ 2 cores, else 1]")] = None,
    executor: Annotated[str, Opt(help="executor: local or ray (more may be registered)")] = "local",
    address: Address = None,
    cpus_per_run: CpusPerRun = None,
    gpus_per_run: GpusPerRun = None,
    pack: Annotated[str, Opt(metavar="auto|off|K", help="local executor: train up to K runs of one architecture "
                             "together on one device; auto: where a timing shows packing is faster")] = "auto",
    epochs: Annotated[int | None, Opt(help="override every arm's number of epochs")] = None,
    set_: Sets = None,
    force: Annotated[bool, Opt(help="adopt a changed spec: keep runs whose config is unchanged, "
                                    "re-run changed ones, delete removed ones")] = False,
    log: Log = None,
    analyze: Annotated[bool, Opt("--analyze", help="analyse every run at the end of training: the spec's "
                                 "[analysis], else Hessian top + trace, 1-D landscape rise, effective ratio")
                       ] = False,
    rebuild_index: Annotated[bool, Opt(help="set a damaged or lost study.db aside and rebuild it from the "
                                            "run directories, then resume (a sound one is kept)")] = False,
    correction: Correction = None,
    target: Target = None,
    baseline: Baseline = None,
    best_of: Annotated[Path | None, PathOpt(help="add an arm: the baseline with the best parameters of a "
                                             "`reglab tune` directory (on seeds the search did not use)")] = None,
) -> None:
    """Run (or resume) a study: every arm over every seed, then print the table and write the report."""
    workers = workers or (default_workers() if executor == "local" else None)
    if executor == "local" and workers > 1 and spec_source_exists(source):
        from reglab.study.workers import start_server

        start_server()  # its imports overlap this process's (a bad source fails first, with none to wait for)
    from reglab.study import load_spec, make_executor

    spec = with_statistics(with_assignments(load_spec(source, seeds=seeds, epochs=epochs), set_), correction, target,
                           baseline)
    if best_of is not None:
        from reglab.study.tune import add_best_arm

        spec, notes = add_best_arm(spec, best_of)
        for line in notes:
            err_console.print(escape(line), highlight=False, soft_wrap=True)
    if analyze:
        spec = spec.with_analysis()
    from reglab.cli.options import check_data, check_device, check_paths

    here = runs_start_here(executor, address)
    check_device(device, here=here)
    if here:  # the paths, data and devices their configs name must be here
        for arm in spec.arms:
            check_paths(spec.arm_config(arm, 0), prefix=f"arms.{arm}.")
            check_data(spec.arm_config(arm, 0), prefix=f"arms.{arm}.")
            check_device(device or spec.arm_config(arm, 0).train.device)
    name, options = executor_choice(executor, pack)
    runner = make_executor(name, chosen=executor, workers=workers,
                           device=device, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                           **options)
    run_and_report(spec, out, runner, force=force, log=log, rebuild=rebuild_index)


def run_and_report(spec: StudySpec, out: Path | None, runner: Executor, *, force: bool,
                   log: str | None = None, rebuild: bool = False) -> None:
    """Run (or resume) `spec` into `out` [studies/<name>], write the report, print the table; exit 1 if a
    run failed."""
    from reglab.report import flatness_table, summary_table, write_report
    from reglab.study import run_study
    from reglab.study.spec import arm_slug

    result = run_study(spec, out or Path("studies") / arm_slug(spec.name), executor=runner, force=force,
                       progress=True, log=log, rebuild=rebuild)
    paths = write_report(result)
    result.tracker.log_report(paths["html"].parent)
    print_table(summary_table(result))
    if (flatness := flatness_table(result)) is not None:
        print_table(flatness)
    analysed = f" ({len(result.analysed)} trained before: analysed only)" if result.analysed else ""
    done = (f"ran {len(result.executed)} runs{analysed}, kept {len(result.skipped)} finished ones, "
            f"{result.seconds:.1f} s")
    console.print(f"{done}\nreport: {escape(str(paths['html']))}\n"
                  f"markdown: {escape(str(paths['markdown']))}  "
                  f"csv: {escape(str(paths.get('summary', paths['runs'])))}",  # runs.csv: no run finished
                  highlight=False, soft_wrap=True)
    failed = result.runs[result.runs["status"] == "failed"]
    if len(failed):
        for _, run in failed.iterrows():
            err_console.print(f"[red]{escape(run['run_id'])} failed:[/] {escape(str(run['error']))}", soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def report(
    study_dir: Annotated[Path, PathArg(help="study directory written by `reglab compare`")],
    out: Annotated[Path | None, PathOpt(help="report directory [default: STUDY_DIR/report]")] = None,
    export: Annotated[str | None, Opt(metavar="FORMATS", help="also export figures as png (300 dpi), svg, pdf "
                                      "and/or tables as latex (booktabs) into REPORT/export, e.g. svg,latex")] = None,
    correction: Correction = None,
    target: Target = None,
    baseline: Baseline = None,
) -> None:
    """Rewrite a study's report (HTML, Markdown, CSV) from its store, e.g. of an interrupted study."""
    from reglab.report import summary_table, write_report
    from reglab.report.export import export as export_files
    from reglab.report.export import parse_formats
    from reglab.study import load_study

    try:
        formats = parse_formats(export or "")
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--export") from None
    study = load_study(study_dir)
    study.spec = with_statistics(study.spec, correction, target, baseline)
    paths = write_report(study, out)
    print_table(summary_table(study))
    console.print(f"report: {escape(str(paths['html']))}", highlight=False, soft_wrap=True)
    if formats:
        written = export_files(study, formats, paths["html"].parent / "export")
        for fmt, files in written.items():
            console.print(f"{fmt}: {len(files)} files in {escape(str(files[0].parent))}" if files else
                          f"{fmt}: nothing to export", highlight=False, soft_wrap=True)


@app.command()
def export(
    study_dir: Annotated[Path, PathArg(help="study directory written by `reglab compare`")],
    out: Annotated[Path | None, PathOpt(help="CSV file [default: STUDY_DIR/<table>.csv]")] = None,
    table: Annotated[str, Opt(help="runs (one row per run) | epochs | summary | stability | robust")] = "runs",
) -> None:
    """Write one table of a study as CSV."""
    from reglab.report import export_csv

    path = export_csv(study_dir, out or study_dir / f"{table}.csv", table)
    console.print(escape(str(path)), highlight=False, soft_wrap=True)


@app.command()
def presets() -> None:
    """List the studies shipped with reglab (`reglab compare <name>`)."""
    from reglab.presets import preset_names, read_preset

    listing = Table(title="presets")
    for column in ("name", "arms", "seeds", "description"):
        listing.add_column(column)
    for name in preset_names():
        spec = read_preset(name)
        listing.add_row(name, escape(", ".join(spec.get("arms", {}))), str(spec.get("seeds", "")),
                        escape(spec.get("description", "")))
    console.print(listing)
