"""`reglab analyze`: landscape, Hessian and condensation of a trained run (reglab.theory.analyze)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from reglab.cli.app import app, console
from reglab.cli.options import PathArg, PathOpt
from reglab.config import ConfigError

Arg, Opt = typer.Argument, typer.Option


def check_range(option: str, value: int | None, low: int, high: int | None = None) -> None:
    """A command-line integer outside [low, high] is refused naming its option, before anything is loaded."""
    if value is not None and value < low:
        raise ConfigError(f"{option}: need at least {low} (got {value})")
    if value is not None and high is not None and value > high:
        raise ConfigError(f"{option}: need at most {high} (got {value})")


@app.command()
def analyze(
    run: Annotated[Path, PathArg(help="run directory (also a study's runs/<id>), or its model.pt / checkpoint.pt")],
    landscape: Annotated[str | None, Opt(help="loss slice along filter-normalized directions: 1d|2d")] = None,
    hessian: Annotated[bool, Opt("--hessian", help="top Hessian eigenvalue and Hutchinson trace")] = False,
    condensation: Annotated[bool, Opt("--condensation", help="effective ratio and cosine heatmap per layer")
                            ] = False,
    out: Annotated[Path | None, PathOpt(help="output directory [default: RUN/analysis]")] = None,
    samples: Annotated[int, Opt(help="first N training samples to evaluate on")] = 1000,
    points: Annotated[int | None, Opt(help="landscape points per axis [default: 41 (1d), 21 (2d)]")] = None,
    trace_samples: Annotated[int, Opt(help="Hutchinson probes of the Hessian trace")] = 100,
    threshold: Annotated[float, Opt(help="cosine similarity above which neurons share a direction")] = 0.95,
    seed: Annotated[int, Opt(help="seed of directions and probes")] = 0,
    device: Annotated[str, Opt(help="auto|cpu|cuda|cuda:N|mps")] = "cpu",
    mode: Annotated[str, Opt(help="eval: dropout off, BatchNorm running statistics; train: masks, batch "
                                  "statistics")] = "eval",
    top_k: Annotated[int, Opt(help="Hessian eigenvalues (Lanczos) to compute")] = 1,
    per_layer: Annotated[bool, Opt("--per-layer", help="the Hessian, with the top eigenvalue and trace of each "
                                                       "module's block")
                         ] = False,
    density: Annotated[bool, Opt("--density", help="Hessian eigenvalue density (stochastic Lanczos quadrature)")
                       ] = False,
    batch_size: Annotated[int | None, Opt(help="accumulate Hessian products over batches of this size")] = None,
) -> None:
    """Write figures and analysis.json for a trained run; with no analysis chosen, do all (landscape 1d)."""
    from reglab.theory.analyze import MAX_POINTS, MAX_SEED, analyze_run

    for option, value, low, high in (("--samples", samples, 1, None), ("--points", points, 2, MAX_POINTS),
                                     ("--trace-samples", trace_samples, 2, None), ("--top-k", top_k, 1, None),
                                     ("--seed", seed, 0, MAX_SEED), ("--batch-size", batch_size, 1, None)):
        check_range(option, value, low, high)
    if landscape is None and not hessian and not condensation and not density and not per_layer:
        landscape, hessian, condensation = "1d", True, True
    result = analyze_run(run, landscape=landscape, hessian=hessian or per_layer, condensation=condensation, out=out,
                         samples=samples, points=points, trace_samples=trace_samples, threshold=threshold,
                         seed=seed, device=device, mode=mode, top_k=top_k, per_layer=per_layer, density=density,
                         batch_size=batch_size)
    table = Table(title=f"analysis of {escape(result['run'])} ({result['samples']} training samples, "
                        f"{result['mode']} mode)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row(f"loss ({result['mode']} mode)", f"{result['loss']:.6g}")
    if "landscape" in result:
        losses = result["landscape"]["losses"]
        flat = [v for row in losses for v in row] if isinstance(losses[0], list) else losses
        table.add_row(f"landscape {landscape}: max loss on [-1, 1]", f"{max(flat):.6g}")
    if "hessian" in result:
        h = result["hessian"]
        table.add_row("Hessian top eigenvalue", f"{h['top_eigenvalue']:.6g}")
        table.add_row(f"Hessian trace ({h['trace_samples']} probes)", f"{h['trace']:.6g} ± {h['trace_se']:.2g}")
        for name, block in h.get("layers", {}).items():
            table.add_row(f"  module {escape(name)}: top eigenvalue, trace",
                          f"{block['top_eigenvalue']:.4g}, {block['trace']:.4g} ± {block['trace_se']:.2g}")
    for name, layer in result.get("condensation", {}).get("layers", {}).items():
        table.add_row(f"effective ratio, layer {escape(name)} ({layer['neurons']} neurons)",
                      f"{layer['effective_ratio']:.4g}")
    console.print(table)
    console.print(f"wrote {escape(str(Path(result['out']) / 'analysis.json'))} and figures", highlight=False,
                  soft_wrap=True)
