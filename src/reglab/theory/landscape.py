"""Loss landscapes: filter-normalized random directions, 1-D / 2-D slices, linear interpolation.

Li, Xu, Taylor, Studer & Goldstein (2018), *Visualizing the loss landscape of neural nets*, NeurIPS:
a random Gaussian direction d whose every filter is rescaled to the norm of the model's filter,
d_{i,j} ← d_{i,j} ‖θ_{i,j}‖/‖d_{i,j}‖ (filter j of layer i: a row of a Linear weight, an output
channel of a Conv weight), then L(θ + αδ) or L(θ + αδ + βη). Zhang & Xu (2022) normalise an FNN's
directions per layer instead ("each layer can be seen as one filter"): ``norm="layer"``.
Goodfellow, Vinyals & Saxe (2015) for the interpolation L((1 − α)θ_a + αθ_b).

Slices are evaluated without gradients, many parameter points at once: `torch.func.functional_call`
vmapped over chunks of `chunk_size` points, in eval mode (default) or train mode (`mode`). In eval
mode a Linear/Conv layer whose input is the data itself is affine in its own weights, so its output
is computed once per direction and combined per point (the costly first layer of an MLP is then
paid 1 + directions times, not once per grid point). Memory grows with chunk_size × (parameters +
activations of x); `loss_fn` must be vmappable (tensor ops, no .item()).
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from reglab.config import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def filter_normalized_direction(model: nn.Module, generator: torch.Generator | None = None, *,
                                norm: Literal["filter", "layer"] = "filter",
                                include_bias_and_norm: bool = False) -> list[torch.Tensor]:
    """One tensor per `model.parameters()`: `named_direction`'s, in parameter order."""
    return list(named_direction(model, norm=norm, include_bias_and_norm=include_bias_and_norm,
                                generator=generator).values())


NORMS = ("filter", "layer")
Direction = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


def named_direction(model: nn.Module, *, norm: str = "filter", include_states: bool = False,
                    include_bias_and_norm: bool = False, generator: torch.Generator | None = None
                    ) -> dict[str, torch.Tensor]:
    """A Gaussian direction by parameter (and buffer) name, rescaled to the model's norms.

    ``norm="filter"`` (Li et al. 2018): each filter of a ≥ 2-D tensor — a Linear row, a Conv output
    channel — gets the norm of the model's filter. ``norm="layer"`` (Zhang & Xu's FNNs, where "each
    layer is one filter"): each tensor as a whole, d_i ← d_i ‖θ_i‖/‖d_i‖. Tensors with ≤ 1 dimension
    (biases, normalisation scales and shifts) are 0, or with `include_bias_and_norm`: per filter, a
    copy of the tensor (Li et al.'s code: one scalar per "filter", rescaled to |θ|, which they take
    as θ itself); per layer, a Gaussian vector rescaled to ‖θ_i‖ like any other tensor.
    `include_states`: BatchNorm's floating buffers (running mean / variance) get entries too, by the
    same rule (Li et al.'s "states" directions); integer buffers never do.
    """
    if norm not in NORMS:
        raise ConfigError(f"norm: expected filter or layer (got {norm!r})")
    tensors = [(name, p.detach()) for name, p in model.named_parameters()]
    if include_states:
        tensors += [(name, b) for name, b in model.named_buffers() if b.is_floating_point()]
    direction = {}
    for name, p in tensors:
        if p.dim() <= 1 and not (include_bias_and_norm and norm == "layer"):
            direction[name] = p.clone() if include_bias_and_norm else torch.zeros_like(p)
            continue
        device = generator.device if generator is not None else p.device
        d = torch.randn(p.shape, generator=generator, device=device, dtype=p.dtype).to(p.device)
        tiny = torch.finfo(p.dtype).tiny
        if norm == "filter":
            scale = p.flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1).clamp_min(tiny)
            direction[name] = d * scale.view(-1, *[1] * (p.dim() - 1))
        else:
            direction[name] = d * (p.norm() / d.norm().clamp_min(tiny))
    return direction


def _by_name(model: nn.Module, direction: Direction) -> dict[str, torch.Tensor]:
    """A direction as a dict by name; a sequence is one tensor per `model.parameters()`, in order."""
    if isinstance(direction, Mapping):
        known = dict(model.named_parameters()) | dict(model.named_buffers())
        if unknown := [k for k in direction if k not in known]:
            raise ConfigError(f"direction: {unknown[0]!r} is not a parameter or buffer of the model")
        return dict(direction)
    names = [name for name, _ in model.named_parameters()]
    if len(direction) != len(names):
        raise ConfigError(f"direction: {len(direction)} tensors for {len(names)} parameters")
    return dict(zip(names, direction, strict=True))


_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _input_layers(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Linear/Conv layers, called once, with weights of their own (not tied to another module's, nor used
    elsewhere in the forward: `_used_elsewhere`), whose input does not depend on the parameters:
    name → input.

    Their output is affine in their own weights, W(c)·h + b(c) = W·h + b + Σ_k c_k (D_k·h + d_k), so
    a slice needs it once per direction instead of once per grid point.
    """
    calls: dict[str, list[torch.Tensor]] = {}
    owners = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    names = {m: n for n, m in model.named_modules()
             if type(m) in _AFFINE and all(owners[id(p)] == 1 for p in m.parameters(recurse=False))}

    def hook(module: nn.Module, inputs: tuple) -> None:
        calls.setdefault(names[module], []).append(inputs[0])

    handles = [m.register_forward_pre_hook(hook) for m in names]
    try:
        with torch.enable_grad():
            model(x.detach())
    finally:
        for handle in handles:
            handle.remove()
    if not all(p.requires_grad for p in model.parameters()):
        return {}
    inputs = {n: c[0].detach() for n, c in calls.items() if len(c) == 1 and not c[0].requires_grad}
    return {n: h for n, h in inputs.items() if n not in _used_elsewhere(model, x, inputs)}


def _used_elsewhere(model: nn.Module, x: torch.Tensor, inputs: dict[str, torch.Tensor]) -> set[str]:
    """The layers of `inputs` whose weights the output depends on besides through the layer's own call
    (e.g. a tied decoder, ``F.linear(h, enc.weight.T)``): with every such call replaced by its detached
    output, the output's gradient with respect to such a weight does not vanish."""
    layers = {name: model.get_submodule(name) for name in inputs}
    try:
        for name, layer in layers.items():
            with torch.no_grad():
                precomputed = layer(inputs[name])
            layer.forward = lambda *_args, out=precomputed: out
        with torch.enable_grad():
            out = model(x.detach())
            outputs = [out] if isinstance(out, torch.Tensor) else list(
                out.values() if isinstance(out, Mapping) else out)
            leaves = [t for t in outputs if isinstance(t, torch.Tensor) and t.requires_grad]
            owned = [(name, p) for name, layer in layers.items() for p in layer.parameters(recurse=False)]
            grads = torch.autograd.grad(sum(t.sum() for t in leaves), [p for _, p in owned],
                                        allow_unused=True) if leaves else [None] * len(owned)
    finally:
        for layer in layers.values():
            layer.__dict__.pop("forward", None)
    return {name for (name, _), grad in zip(owned, grads, strict=True) if grad is not None}


def _affine(layer: nn.Module, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.linear(h, weight, bias) if isinstance(layer, nn.Linear) else layer._conv_forward(h, weight, bias)


@contextlib.contextmanager
def _precomputed_inputs(model: nn.Module, x: torch.Tensor, directions: list[dict[str, torch.Tensor]],
                        coefficient: list) -> Iterator[set[str]]:
    """Replace the forward of each input layer by base + Σ_k c_k·(its output along direction k), with
    c read from `coefficient[0]` at call time; yields the names of the parameters it covers."""
    inputs = _input_layers(model, x)
    layers = {name: model.get_submodule(name) for name in inputs}
    covered = set()
    try:
        for name, layer in layers.items():
            h = inputs[name]
            keys = [f"{name}.weight"] + ([f"{name}.bias"] if layer.bias is not None else [])
            with torch.no_grad():  # rows: the output at θ, then along each direction
                rows = torch.stack([layer(h), *(_affine(layer, h, d.get(keys[0], torch.zeros_like(layer.weight)),
                                                        d.get(keys[1]) if len(keys) > 1 else None)
                                                for d in directions)])

            def forward(*_args, rows=rows) -> torch.Tensor:
                c = coefficient[0].to(rows)
                return torch.tensordot(torch.cat([torch.ones_like(c[:1]), c]), rows, 1)  # one pass: (1, c)·rows

            layer.forward = forward
            covered.update(keys)
        yield covered
    finally:
        for layer in layers.values():
            layer.__dict__.pop("forward", None)


def _grid_losses(model: nn.Module, directions: Sequence[Direction], coeffs: torch.Tensor,
                 loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, chunk_size: int, mode: str = "eval"
                 ) -> torch.Tensor:
    """L(θ + Σ_k c_k d_k) for every row c of `coeffs` (points, k), vmapped over chunks of points.

    Eval mode, buffers not moved: layers whose input does not depend on the parameters are evaluated
    once per direction (`_input_layers`).
    Train mode: dropout draws one mask shared by the points of a chunk (vmap randomness "same");
    BatchNorm uses batch statistics and updates only per-point copies of its buffers.
    """
    if mode not in ("eval", "train"):
        raise ConfigError(f"mode: expected eval or train (got {mode!r})")
    # contiguous copies: a channels-last model (a conv net trained on CPU) would hand vmap channels-last
    # activations, and adaptive pooling has no batching rule for those (a warning and a per-point loop)
    directions = [{k: v.contiguous() for k, v in _by_name(model, d).items()} for d in directions]
    state = {**dict(model.named_buffers()), **{n: p.detach().contiguous() for n, p in model.named_parameters()}}
    perturbed = sorted({k for d in directions for k in d})
    coefficient: list = [None]
    saved_modes = [m.training for m in model.modules()]
    model.train(mode == "train")
    try:
        with torch.no_grad(), contextlib.ExitStack() as stack:
            buffers_move = any(k in dict(model.named_buffers()) for k in perturbed)  # inputs may depend on them
            covered = stack.enter_context(_precomputed_inputs(model, x, directions, coefficient)) \
                if mode == "eval" and not buffers_move else set()
            moved = [k for k in perturbed if k not in covered]
            fixed = {k: v for k, v in state.items() if k not in moved and k not in covered}

            def loss_at(c: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
                coefficient[0] = c
                point = {k: state[k] + sum(c[i] * d[k] for i, d in enumerate(directions) if k in d) for k in moved}
                return loss_fn(functional_call(model, {**fixed, **buffers, **point}, (x,)), y)

            losses = []
            for chunk in coeffs.split(chunk_size):
                # train mode: every point gets its own copy of the buffers BatchNorm updates in place
                copies = {k: v.expand(len(chunk), *v.shape).clone() for k, v in model.named_buffers()
                          if k not in moved} if mode == "train" else {}
                losses.append(torch.vmap(loss_at, randomness="same")(chunk, copies))
            return torch.cat(losses)
    finally:
        for m, training in zip(model.modules(), saved_modes, strict=True):
            m.training = training


def _coefficients(values: Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).flatten()


def loss_along_direction(model: nn.Module, direction: Direction, loss_fn: LossFn,
                         x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float] | torch.Tensor, *,
                         chunk_size: int = 32, mode: str = "eval") -> torch.Tensor:
    """Losses L(θ + α·d) for each α, shape (len(alphas),). `direction`: one tensor per parameter, or
    a dict by parameter / buffer name (`named_direction`)."""
    alphas = _coefficients(alphas, next(model.parameters()))
    return _grid_losses(model, [direction], alphas[:, None], loss_fn, x, y, chunk_size, mode)


def loss_surface(model: nn.Module, d1: Direction, d2: Direction, loss_fn: LossFn,
                 x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float] | torch.Tensor,
                 betas: Sequence[float] | torch.Tensor, *, chunk_size: int = 32, mode: str = "eval") -> torch.Tensor:
    """Losses L(θ + α_i·d1 + β_j·d2), shape (len(alphas), len(betas)), [i, j] ↔ (α_i, β_j)."""
    like = next(model.parameters())
    alphas, betas = _coefficients(alphas, like), _coefficients(betas, like)
    grid = torch.cartesian_prod(alphas, betas).view(-1, 2)
    return _grid_losses(model, [d1, d2], grid, loss_fn, x, y, chunk_size, mode).view(len(alphas), len(betas))


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
                bn_loader: Iterable | torch.Tensor | None = None, mode: str = "eval") -> dict:
    """Loss (and accuracy, for integer labels) at θ(α) = (1 − α)θ_a + αθ_b, in `mode` (eval: dropout off,
    BatchNorm running statistics; train: dropout masks, batch statistics).

    Default alphas: linspace(−0.5, 1.5, 41). Floating buffers are interpolated like parameters; with
    BatchNorm and `bn_loader`, the BN statistics are instead recomputed on it at every α. Returns
    ``{"alphas", "losses"[, "accs"], "bn_statistics", "mode"}``, "bn_statistics" "recomputed",
    "interpolated", "batch" (train mode: the losses use each batch's statistics) or None (no BatchNorm).
    """
    if mode not in ("eval", "train"):
        raise ConfigError(f"mode: expected eval or train (got {mode!r})")
    if alphas is None:  # linspace(−0.5, 1.5, 41) as k/20: 0 and 1 exactly on the grid
        alphas = torch.arange(-10, 31, dtype=torch.float64) / 20
    alphas = torch.as_tensor(alphas).flatten()
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    model = copy.deepcopy(model_a).train(mode == "train")
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
    result["bn_statistics"] = None if not has_bn else "batch" if mode == "train" else (
        "recomputed" if bn_loader is not None else "interpolated")
    result["mode"] = mode
    return result
