"""Analysis of a trained run: loss landscape, Hessian sharpness and condensation, as figures and numbers.

`analyze_run` loads a run directory (or its model.pt / checkpoint.pt; the directory's config.json
rebuilds the model and data), takes the first `samples` training samples and the run's criterion in
eval mode (dropout off, no label smoothing, like the trainer's evaluation), and writes into `out`:

    analysis.json            every number below
    landscape_1d.png         L(θ + α·δ), α ∈ [−1, 1]; δ filter-normalized (Li et al. 2018)
    landscape_2d.png         L(θ + α·δ + β·η) on a points × points grid of [−1, 1]²
    cosine_<layer>.png       the layer's neuron cosine-similarity heatmap (layers with ≥ 2 neurons)
    features_<layer>.png     (angle, amplitude) of each neuron, for layers with 1-D input and bias

Hessian: top eigenvalue by Lanczos and Hutchinson's trace (mean ± standard error of `trace_samples`
Rademacher draws). Directions, start vectors and probes come from generators seeded with `seed`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from reglab.theory.condensation import (
    _LAYER_TYPES,
    cosine_similarity_matrix,
    effective_ratio_greedy,
    neuron_features,
)
from reglab.theory.hessian import hessian_top_eigenvalue, hessian_trace
from reglab.theory.landscape import filter_normalized_direction, loss_along_direction, loss_surface
from reglab.train.loop import load_trained
from reglab.train.losses import make_criterion
from reglab.train.rundir import clean_json

DEFAULT_POINTS = {"1d": 41, "2d": 21}


def resolve_run(path: str | Path) -> tuple[Path, Path]:
    """(run directory, weights file) of a run directory or of a path to its model.pt / checkpoint.pt."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run directory or weights file")
    if path.is_file():
        if path.suffix != ".pt":
            raise ValueError(f"{path}: expected a run directory or its model.pt / checkpoint.pt")
        run_dir, weights = path.parent, path
    else:
        run_dir = path
        weights = next((run_dir / n for n in ("model.pt", "checkpoint.pt") if (run_dir / n).exists()), None)
        if weights is None:
            raise FileNotFoundError(f"{run_dir}: no model.pt or checkpoint.pt (weights) in this directory")
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir / 'config.json'}: no run config beside the weights")
    return run_dir, weights


def symmetric_grid(points: int) -> torch.Tensor:
    """`points` evenly spaced values of [−1, 1] (float64); −1, 1 and, for odd `points`, 0 exactly."""
    if points < 2:
        raise ValueError(f"points: need at least 2 (got {points})")
    return torch.arange(-(points - 1), points, 2, dtype=torch.float64) / (points - 1)


def landscape_slice(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, kind: str, points: int,
                    seed: int, out: Path) -> dict:
    """1-D or 2-D slice along filter-normalized random directions; saves landscape_<kind>.png."""
    from reglab.theory.plots import plot_landscape_1d, plot_landscape_2d

    generator = torch.Generator().manual_seed(seed)
    grid = symmetric_grid(points)
    d1 = filter_normalized_direction(model, generator)
    figure = out / f"landscape_{kind}.png"
    if kind == "1d":
        losses = loss_along_direction(model, d1, loss_fn, x, y, grid)
        plot_landscape_1d(grid, losses, path=figure)
        return {"alphas": grid.tolist(), "losses": losses.tolist(), "figure": figure.name}
    d2 = filter_normalized_direction(model, generator)
    surface = loss_surface(model, d1, d2, loss_fn, x, y, grid, grid)
    plot_landscape_2d(grid, grid, surface, path=figure)
    return {"alphas": grid.tolist(), "betas": grid.tolist(), "losses": surface.tolist(), "figure": figure.name}


def hessian_sharpness(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, trace_samples: int,
                      seed: int) -> dict:
    """Top Hessian eigenvalue (Lanczos) and Hutchinson trace ± its standard error."""
    top = hessian_top_eigenvalue(model, loss_fn, x, y, generator=torch.Generator().manual_seed(seed))
    trace, se = hessian_trace(model, loss_fn, x, y, samples=trace_samples,
                              generator=torch.Generator(device=x.device).manual_seed(seed))
    return {"top_eigenvalue": top, "trace": trace, "trace_se": se, "trace_samples": trace_samples}


def layer_condensation(model: nn.Module, threshold: float, out: Path) -> dict:
    """Per Linear/Conv layer with ≥ 2 neurons: effective ratio, cosine heatmap and (1-D input) feature scatter."""
    from reglab.theory.plots import plot_cosine_similarity, plot_neuron_features

    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, _LAYER_TYPES)]
    result = {}
    for i, (name, layer) in enumerate(layers):
        m = layer.weight.shape[0]
        if m < 2:
            continue
        following = layers[i + 1][1] if i + 1 < len(layers) else None
        output = following if following is not None and following.weight.shape[1] == m else None
        features = neuron_features(layer, output)
        slug = name.replace(".", "_") or "model"
        order = features.angle.argsort() if features.angle is not None else None
        plot_cosine_similarity(cosine_similarity_matrix(layer), order=order, path=out / f"cosine_{slug}.png")
        record = {"neurons": m, "effective_ratio": effective_ratio_greedy(layer, threshold),
                  "figures": [f"cosine_{slug}.png"]}
        if features.angle is not None:
            plot_neuron_features(features, path=out / f"features_{slug}.png")
            record["figures"].append(f"features_{slug}.png")
        result[name] = record
    return {"threshold": threshold, "layers": result}


def analyze_run(path: str | Path, *, landscape: str | None = None, hessian: bool = False,
                condensation: bool = False, out: str | Path | None = None, samples: int = 1000,
                points: int | None = None, trace_samples: int = 100, threshold: float = 0.95, seed: int = 0,
                device: str = "cpu") -> dict:
    """Analyse a trained run (module docstring); returns the numbers also written to `out`/analysis.json.

    `out` defaults to <run dir>/analysis; `points` to 41 (1-D) or 21 (per axis, 2-D).
    """
    if landscape is not None and landscape not in DEFAULT_POINTS:
        raise ValueError(f"landscape: expected 1d or 2d (got {landscape!r})")
    if samples < 1:
        raise ValueError(f"samples: need at least 1 (got {samples})")
    run_dir, weights = resolve_run(path)
    out = Path(out) if out is not None else run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    cfg, model, data = load_trained(run_dir, device=device, weights=weights)
    loss_fn = make_criterion(cfg.train.loss, data.num_classes)
    x, y = data.x_train[:samples], data.y_train[:samples]
    with torch.no_grad():
        loss = loss_fn(model(x), y).item()
    result = {"run": str(run_dir), "weights": str(weights), "out": str(out), "samples": x.shape[0], "seed": seed,
              "loss": loss}
    if landscape is not None:
        result["landscape"] = landscape_slice(model, loss_fn, x, y, landscape, points or DEFAULT_POINTS[landscape],
                                              seed, out)
    if hessian:
        result["hessian"] = hessian_sharpness(model, loss_fn, x, y, trace_samples, seed)
    if condensation:
        result["condensation"] = layer_condensation(model, threshold, out)
    (out / "analysis.json").write_text(json.dumps(clean_json(result), indent=2))
    return result
