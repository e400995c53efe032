"""Analysis of a trained run: loss landscape, Hessian sharpness and condensation, as figures and numbers.

`analyze_run` loads a run directory (or its model.pt / checkpoint.pt; the directory's config.json
rebuilds the model and data), takes the first `samples` training samples and the run's criterion
(no label smoothing, like the trainer's evaluation) in `mode` "eval" (default: dropout off,
BatchNorm running statistics) or "train" (dropout masks, batch statistics), and writes into `out`:

    analysis.json            every number below
    landscape_1d.png         L(θ + α·δ), α ∈ [−1, 1]; δ filter-normalized (Li et al. 2018)
    landscape_2d.png         L(θ + α·δ + β·η) on a points × points grid of [−1, 1]²
    cosine_<layer>.png       the layer's neuron cosine-similarity heatmap (layers with ≥ 2 neurons)
    features_<layer>.png     (angle, amplitude) of each neuron, for layers with 1-D input and bias

    hessian_density.png      the Hessian's eigenvalue density (stochastic Lanczos quadrature), with `density`

Hessian: top-`top_k` eigenvalues by Lanczos and Hutchinson's trace (mean ± standard error of
`trace_samples` Rademacher draws), for the whole model and, with `per_layer`, for each module's
block; over `batch_size` batches when given. Directions, start vectors and probes come from
generators seeded with `seed`. The mode is written into analysis.json.

`sharpness_metrics` computes the scalars a study stores per run (flatness and condensation, each
with its estimator's own noise).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from reglab.config import GENERATOR_SEED_LIMIT, ConfigError
from reglab.provenance import record
from reglab.theory.condensation import (
    _LAYER_TYPES,
    cosine_similarity_matrix,
    effective_ratio_greedy,
    neuron_features,
)
from reglab.theory.hessian import (
    check_mode,
    hessian_density,
    hessian_eigenpairs,
    hessian_trace,
    parameter_blocks,
)
from reglab.theory.landscape import filter_normalized_direction, loss_along_direction, loss_surface
from reglab.train.loop import load_trained
from reglab.train.losses import make_criterion
from reglab.train.rundir import check_directory, clean_json, make_directory

DEFAULT_POINTS = {"1d": 41, "2d": 21}
MAX_POINTS = 1001  # per axis: a grid step of 0.002, finer than any figure shows (2d: a million losses)
MAX_SEED = GENERATOR_SEED_LIMIT - 1  # what torch.Generator.manual_seed takes


def resolve_run(path: str | Path) -> tuple[Path, Path]:
    """(run directory, weights file) of a run directory or of a path to its model.pt / checkpoint.pt."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run directory or weights file")
    if path.is_file():
        if path.suffix != ".pt":
            raise ConfigError(f"{path}: expected a run directory or its model.pt / checkpoint.pt")
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
        raise ConfigError(f"points: need at least 2 (got {points})")
    return torch.arange(-(points - 1), points, 2, dtype=torch.float64) / (points - 1)


def landscape_slice(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, kind: str, points: int,
                    seed: int, out: Path, mode: str = "eval") -> dict:
    """1-D or 2-D slice along filter-normalized random directions; saves landscape_<kind>.png."""
    from reglab.theory.plots import plot_landscape_1d, plot_landscape_2d

    generator = torch.Generator().manual_seed(seed)
    grid = symmetric_grid(points)
    d1 = filter_normalized_direction(model, generator)
    figure = out / f"landscape_{kind}.png"
    if kind == "1d":
        losses = loss_along_direction(model, d1, loss_fn, x, y, grid, mode=mode)
        plot_landscape_1d(grid, losses, path=figure)
        return {"alphas": grid.tolist(), "losses": losses.tolist(), "figure": figure.name}
    d2 = filter_normalized_direction(model, generator)
    surface = loss_surface(model, d1, d2, loss_fn, x, y, grid, grid, mode=mode)
    plot_landscape_2d(grid, grid, surface, path=figure)
    return {"alphas": grid.tolist(), "betas": grid.tolist(), "losses": surface.tolist(), "figure": figure.name}


def hessian_sharpness(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, trace_samples: int,
                      seed: int, *, mode: str = "eval", top_k: int = 1, params: list[str] | None = None,
                      batch_size: int | None = None) -> dict:
    """Top-k Hessian eigenvalues (Lanczos, with their Ritz residuals) and Hutchinson trace ± its standard error."""
    common = {"mode": mode, "params": params, "batch_size": batch_size}
    pairs = hessian_eigenpairs(model, loss_fn, x, y, k=top_k, generator=torch.Generator().manual_seed(seed),
                               **common)
    trace, se = hessian_trace(model, loss_fn, x, y, samples=trace_samples,
                              generator=torch.Generator(device=x.device).manual_seed(seed), **common)
    return {"top_eigenvalue": pairs.values[0].item(), "eigenvalues": pairs.values.tolist(),
            "residuals": pairs.residuals.tolist(), "trace": trace, "trace_se": se, "trace_samples": trace_samples}


def density_section(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, seed: int, out: Path, *,
                    mode: str, batch_size: int | None, steps: int = 80, probes: int = 1) -> dict:
    """SLQ nodes and weights of the Hessian spectrum; saves hessian_density.png (σ = 1% of the range)."""
    from reglab.theory.plots import plot_hessian_density

    density = hessian_density(model, loss_fn, x, y, steps=steps, probes=probes, mode=mode, batch_size=batch_size,
                              generator=torch.Generator(device=x.device).manual_seed(seed))
    plot_hessian_density(density, path=out / "hessian_density.png")
    return {"steps": steps, "probes": probes, "nodes": [t.tolist() for t in density.nodes],
            "weights": [w.tolist() for w in density.weights], "figure": "hessian_density.png"}


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
        record = {"neurons": m, "effective_ratio": effective_ratio_greedy(layer, threshold), "method": "greedy",
                  "figures": [f"cosine_{slug}.png"]}
        if features.angle is not None:
            plot_neuron_features(features, path=out / f"features_{slug}.png")
            record["figures"].append(f"features_{slug}.png")
        result[name] = record
    return {"threshold": threshold, "layers": result}


def analyze_run(path: str | Path, *, landscape: str | None = None, hessian: bool = False,
                condensation: bool = False, out: str | Path | None = None, samples: int = 1000,
                points: int | None = None, trace_samples: int = 100, threshold: float = 0.95, seed: int = 0,
                device: str = "cpu", mode: str = "eval", top_k: int = 1, per_layer: bool = False,
                density: bool = False, batch_size: int | None = None) -> dict:
    """Analyse a trained run (module docstring); returns the numbers also written to `out`/analysis.json.

    `out` defaults to <run dir>/analysis; `points` to 41 (1-D) or 21 (per axis, 2-D).
    """
    if landscape is not None and landscape not in DEFAULT_POINTS:
        raise ConfigError(f"landscape: expected 1d or 2d (got {landscape!r})")
    if samples < 1:
        raise ConfigError(f"samples: need at least 1 (got {samples})")
    if points is not None and points < 2:  # 0 too, rather than read as "the default"
        raise ConfigError(f"points: need at least 2 (got {points})")
    if points is not None and points > MAX_POINTS:
        raise ConfigError(f"points: need at most {MAX_POINTS} (got {points})")
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed: need 0 to 2**64 - 1, what torch's generators take (got {seed})")
    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold: a cosine similarity in (0, 1] (got {threshold})")
    check_mode(mode)
    run_dir, weights = resolve_run(path)
    out = check_directory(out if out is not None else run_dir / "analysis", "an analysis directory")
    cfg, model, data = load_trained(run_dir, device=device, weights=weights)
    size = sum(p.numel() for p in model.parameters() if p.requires_grad)  # the Hessian's dimension
    if hessian and top_k > size:
        raise ConfigError(f"top_k: {top_k} eigenvalues asked of a Hessian of dimension {size} (the model's "
                          f"trainable parameters)")
    make_directory(out, "an analysis directory")
    loss_fn = make_criterion(cfg.train.loss, data.num_classes)
    x, y = data.x_train[:samples], data.y_train[:samples]
    result = {"run": str(run_dir), "weights": str(weights), "out": str(out), "samples": x.shape[0], "seed": seed,
              "mode": mode, "batch_size": batch_size, "provenance": record([str(x.device)]),
              "loss": loss_in_mode(model, loss_fn, x, y, mode)}
    if landscape is not None:
        result["landscape"] = landscape_slice(model, loss_fn, x, y, landscape, points or DEFAULT_POINTS[landscape],
                                              seed, out, mode)
    if hessian:
        result["hessian"] = hessian_sharpness(model, loss_fn, x, y, trace_samples, seed, mode=mode, top_k=top_k,
                                              batch_size=batch_size)
        if per_layer:
            result["hessian"]["layers"] = {
                name: hessian_sharpness(model, loss_fn, x, y, trace_samples, seed, mode=mode, top_k=1,
                                        params=params, batch_size=batch_size)
                for name, params in parameter_blocks(model).items()}
    if density:
        result["hessian_density"] = density_section(model, loss_fn, x, y, seed, out, mode=mode,
                                                    batch_size=batch_size)
    if condensation:
        result["condensation"] = layer_condensation(model, threshold, out)
    (out / "analysis.json").write_text(json.dumps(clean_json(result), indent=2))
    return result


def loss_in_mode(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, mode: str) -> float:
    """The loss at θ in `mode` (BatchNorm running statistics left as they are), for reference."""
    from torch.func import functional_call

    buffers = {k: v.clone() for k, v in model.named_buffers()}
    was_training = model.training
    model.train(mode == "train")
    try:
        with torch.no_grad():
            return loss_fn(functional_call(model, buffers, (x,)), y).item()
    finally:
        model.train(was_training)


def sharpness_metrics(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, *,
                      hessian: tuple[str, ...] | list[str] = (), landscape: str | None = None,
                      effective_ratio: bool = False, per_layer: bool = False, mode: str = "eval",
                      trace_samples: int = 50, directions: int = 5, radius: float = 0.5, threshold: float = 0.95,
                      batch_size: int | None = None, seed: int = 0) -> dict[str, float]:
    """Scalars of one trained model for a study, each with its estimator's noise where it has one:

    hessian_top (+ hessian_top_residual, the Lanczos ‖Hv − λv‖ bound), hessian_trace (+ hessian_trace_se,
    Hutchinson s/√probes), landscape_rise = mean over `directions` filter-normalized directions d and
    α = ±`radius` of L(θ + αd) − L(θ) (+ landscape_rise_se, std over directions / √directions),
    effective_ratio of the first Linear/Conv layer (greedy cover). With `per_layer`, hessian_top/<module>
    and hessian_trace/<module> for each module's block of H.
    """
    check_mode(mode)
    values: dict[str, float] = {}
    common = {"mode": mode, "batch_size": batch_size}
    layers = parameter_blocks(model) if per_layer else {}
    blocks = [(None, "")] + [(params, f"/{name}") for name, params in layers.items()]
    for params, suffix in blocks:
        if "top" in hessian:
            pairs = hessian_eigenpairs(model, loss_fn, x, y, k=1, params=params, **common,
                                       generator=torch.Generator().manual_seed(seed))
            values[f"hessian_top{suffix}"] = pairs.values[0].item()
            values[f"hessian_top_residual{suffix}"] = pairs.residuals[0].item()
        if "trace" in hessian:
            trace, se = hessian_trace(model, loss_fn, x, y, samples=trace_samples, params=params, **common,
                                      generator=torch.Generator(device=x.device).manual_seed(seed))
            values[f"hessian_trace{suffix}"], values[f"hessian_trace_se{suffix}"] = trace, se
    if landscape is not None:
        if landscape != "1d":
            raise ConfigError(f"landscape: a study metric needs 1d (got {landscape!r})")
        generator = torch.Generator().manual_seed(seed)
        alphas = torch.tensor([-radius, 0.0, radius])
        rises = []
        for _ in range(directions):
            losses = loss_along_direction(model, filter_normalized_direction(model, generator), loss_fn, x, y,
                                          alphas, mode=mode)
            rises.append(((losses[0] + losses[2]) / 2 - losses[1]).item())
        rise = torch.tensor(rises, dtype=torch.float64)
        values["landscape_rise"] = rise.mean().item()
        values["landscape_rise_se"] = rise.std().item() / directions**0.5 if directions > 1 else float("nan")
    if effective_ratio:
        layer = next((m for m in model.modules() if isinstance(m, _LAYER_TYPES) and m.weight.shape[0] > 1), None)
        if layer is None:
            raise ConfigError("effective_ratio: the model has no Linear/Conv layer with ≥ 2 neurons")
        values["effective_ratio"] = effective_ratio_greedy(layer, threshold)
    return values
