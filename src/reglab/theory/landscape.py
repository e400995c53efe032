"""Loss landscapes: filter-normalized random directions, 1-D / 2-D slices, linear interpolation.

Li, Xu, Taylor, Studer & Goldstein (2018), *Visualizing the loss landscape of neural nets*, NeurIPS:
a random Gaussian direction d whose every filter is rescaled to the norm of the model's filter,
d_{i,j} ← d_{i,j} ‖θ_{i,j}‖/‖d_{i,j}‖ (filter j of layer i: a row of a Linear weight, an output
channel of a Conv weight), then L(θ + αδ) or L(θ + αδ + βη). Zhang & Xu (2022) normalise an FNN's
directions per layer instead ("each layer can be seen as one filter"): ``norm="layer"``.
Goodfellow, Vinyals & Saxe (2015) for the interpolation L((1 − α)θ_a + αθ_b).

Slices are evaluated in eval mode without gradients, many parameter points at once:
`torch.func.functional_call` vmapped over chunks of `chunk_size` points. Memory grows with
chunk_size × (parameters + activations of x); `loss_fn` must be vmappable (tensor ops, no .item()).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def filter_normalized_direction(model: nn.Module, generator: torch.Generator | None = None, *,
                                norm: Literal["filter", "layer"] = "filter",
                                include_bias_and_norm: bool = False) -> list[torch.Tensor]:
    """One tensor per `model.parameters()`: Gaussian, rescaled to the model's norms.

    ``norm="filter"`` (Li et al. 2018): each filter of a ≥ 2-D parameter — a Linear row, a Conv output
    channel — gets the norm of the model's filter. ``norm="layer"`` (Zhang & Xu's FNNs, where "each
    layer is one filter"): each parameter tensor as a whole, d_i ← d_i ‖θ_i‖/‖d_i‖.
    Parameters with ≤ 1 dimension (biases, normalisation scales/shifts) are 0, or with
    `include_bias_and_norm`: per filter, a copy of the parameter (Li et al.'s code: one scalar per
    "filter", rescaled to |θ|, which they take as θ itself); per layer, a Gaussian vector rescaled to ‖θ_i‖.
    """
    if norm not in ("filter", "layer"):
        raise ValueError(f"norm must be 'filter' or 'layer', got {norm!r}")
    direction = []
    for p in model.parameters():
        p = p.detach()
        if p.dim() <= 1 and not (include_bias_and_norm and norm == "layer"):
            direction.append(p.clone() if include_bias_and_norm else torch.zeros_like(p))
            continue
        device = generator.device if generator is not None else p.device
        d = torch.randn(p.shape, generator=generator, device=device, dtype=p.dtype).to(p.device)
        units_p, units_d = (p.flatten(1), d.flatten(1)) if norm == "filter" else (p.reshape(1, -1), d.reshape(1, -1))
        scale = units_p.norm(dim=1) / units_d.norm(dim=1).clamp_min(torch.finfo(p.dtype).tiny)
        direction.append(d * (scale.view(-1, *[1] * (p.dim() - 1)) if norm == "filter" else scale))
    return direction


def _grid_losses(model: nn.Module, directions: Sequence[Sequence[torch.Tensor]], coeffs: torch.Tensor,
                 loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """L(θ + Σ_k c_k d_k) for every row c of `coeffs` (points, k), in eval mode, vmapped in chunks."""
    named = [(name, p.detach()) for name, p in model.named_parameters()]
    buffers = dict(model.named_buffers())

    def loss_at(c: torch.Tensor) -> torch.Tensor:
        params = {name: p + sum(c[k] * d[i] for k, d in enumerate(directions))
                  for i, (name, p) in enumerate(named)}
        return loss_fn(functional_call(model, {**buffers, **params}, (x,)), y)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([torch.vmap(loss_at)(chunk) for chunk in coeffs.split(chunk_size)])
    finally:
        model.train(was_training)


def _coefficients(values: Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).flatten()


def loss_along_direction(model: nn.Module, direction: Sequence[torch.Tensor], loss_fn: LossFn,
                         x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float] | torch.Tensor, *,
                         chunk_size: int = 32) -> torch.Tensor:
    """Losses L(θ + α·d) for each α (eval mode), shape (len(alphas),)."""
    alphas = _coefficients(alphas, next(model.parameters()))
    return _grid_losses(model, [direction], alphas[:, None], loss_fn, x, y, chunk_size)


def loss_surface(model: nn.Module, d1: Sequence[torch.Tensor], d2: Sequence[torch.Tensor], loss_fn: LossFn,
                 x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float] | torch.Tensor,
                 betas: Sequence[float] | torch.Tensor, *, chunk_size: int = 32) -> torch.Tensor:
    """Losses L(θ + α_i·d1 + β_j·d2) (eval mode), shape (len(alphas), len(betas)), [i, j] ↔ (α_i, β_j)."""
    like = next(model.parameters())
    alphas, betas = _coefficients(alphas, like), _coefficients(betas, like)
    grid = torch.cartesian_prod(alphas, betas).view(-1, 2)
    return _grid_losses(model, [d1, d2], grid, loss_fn, x, y, chunk_size).view(len(alphas), len(betas))


_BatchNorm = nn.modules.batchnorm._BatchNorm


@torch.no_grad()
def _recompute_bn(model: nn.Module, loader: Iterable | torch.Tensor) -> None:
    """BatchNorm running statistics re-estimated as the average over `loader`'s batches
    (`torch.optim.swa_utils.update_bn`, but with dropout off). Batches: tensors or (x, ...) tuples."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    for m in model.modules():
        if not isinstance(m, _BatchNorm):
            m.training = False  # only BN in train mode: no dropout / stochastic depth noise
    for batch in [loader] if isinstance(loader, torch.Tensor) else loader:
        model((batch[0] if isinstance(batch, list | tuple) else batch).to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)


def interpolate(model_a: nn.Module, model_b: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                alphas: Sequence[float] | torch.Tensor | None = None, *,
                bn_loader: Iterable | torch.Tensor | None = None) -> dict:
    """Loss (and accuracy, for integer labels) at θ(α) = (1 − α)θ_a + αθ_b, eval mode.

    Default alphas: linspace(−0.5, 1.5, 41). Floating buffers are interpolated like parameters; with
    BatchNorm and `bn_loader`, the BN statistics are instead recomputed on it at every α. Returns
    ``{"alphas", "losses"[, "accs"], "bn_statistics"}``, the last "recomputed", "interpolated" or None
    (no BatchNorm).
    """
    if alphas is None:  # linspace(−0.5, 1.5, 41) as k/20: 0 and 1 exactly on the grid
        alphas = torch.arange(-10, 31, dtype=torch.float64) / 20
    alphas = torch.as_tensor(alphas).flatten()
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    model = copy.deepcopy(model_a).eval()
    has_bn = any(isinstance(m, _BatchNorm) for m in model.modules())
    classify = not y.is_floating_point()
    losses, accs = [], []
    with torch.no_grad():
        for alpha in alphas.tolist():
            model.load_state_dict({k: torch.lerp(v, state_b[k], alpha) if v.is_floating_point() else v
                                   for k, v in state_a.items()})
            if has_bn and bn_loader is not None:
                _recompute_bn(model, bn_loader)
            out = model(x)
            losses.append(loss_fn(out, y).item())
            if classify:
                accs.append((out.argmax(1) == y).double().mean().item())
    result = {"alphas": alphas, "losses": torch.tensor(losses, dtype=torch.float64)}
    if classify:
        result["accs"] = torch.tensor(accs, dtype=torch.float64)
    result["bn_statistics"] = ("recomputed" if bn_loader is not None else "interpolated") if has_bn else None
    return result
