"""`reglab analyze`: landscape, Hessian and condensation of a trained run (reglab.theory.analyze)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from reglab.cli.app import app, console

Arg, Opt = typer.Argument, typer.Option


@app.command()
def analyze(
    run: Annotated[Path, Arg(help="run directory (also a study's runs/<id>), or its model.pt / checkpoint.pt")],
    landscape: Annotated[str | None, Opt(help="loss slice along filter-normalized directions: 1d|2d")] = None,
    hessian: Annotated[bool, Opt("--hessian", help="top Hessian eigenvalue and Hutchinson trace")] = False,
    condensation: Annotated[bool, Opt("--condensation", help="effective ratio and cosine heatmap per layer")
                            ] = False,
    out: Annotated[Path | None, Opt(help="output directory [default: RUN/analysis]")] = None,
    samples: Annotated[int, Opt(help="first N training samples to evaluate on")] = 1000,
    points: Annotated[int | None, Opt(help="landscape points per axis [default: 41 (1d), 21 (2d)]")] = None,
    trace_samples: Annotated[int, Opt(help="Hutchinson probes of the Hessian trace")] = 100,
    threshold: Annotated[float, Opt(help="cosine similarity above which neurons share a direction")] = 0.95,
    seed: Annotated[int, Opt(help="seed of directions and probes")] = 0,
    device: Annotated[str, Opt(help="cpu|cuda|cuda:N|mps")] = "cpu",
) -> None:
    """Write figures and analysis.json for a trained run; with no analysis chosen, do all (landscape 1d)."""
    from reglab.theory.analyze import analyze_run

    if landscape is None and not hessian and not condensation:
        landscape, hessian, condensation = "1d", True, True
    result = analyze_run(run, landscape=landscape, hessian=hessian, condensation=condensation, out=out,
                         samples=samples, points=points, trace_samples=trace_samples, threshold=threshold,
                         seed=seed, device=device)
    table = Table(title=f"analysis of {escape(result['run'])} ({result['samples']} training samples)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("eval loss", f"{result['loss']:.6g}")
    if "landscape" in result:
        losses = result["landscape"]["losses"]
        flat = [v for row in losses for v in row] if isinstance(losses[0], list) else losses
        table.add_row(f"landscape {landscape}: max loss on [-1, 1]", f"{max(flat):.6g}")
    if "hessian" in result:
        h = result["hessian"]
        table.add_row("Hessian top eigenvalue", f"{h['top_eigenvalue']:.6g}")
        table.add_row(f"Hessian trace ({h['trace_samples']} probes)", f"{h['trace']:.6g} ± {h['trace_se']:.2g}")
    for name, layer in result.get("condensation", {}).get("layers", {}).items():
        table.add_row(f"effective ratio, layer {escape(name)} ({layer['neurons']} neurons)",
                      f"{layer['effective_ratio']:.4g}")
    console.print(table)
    console.print(f"wrote {escape(str(Path(result['out']) / 'analysis.json'))} and figures", highlight=False)
