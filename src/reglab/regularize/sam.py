"""Sharpness-aware minimisation (Foret et al. 2021, "Sharpness-Aware Minimization").

One SAM step: ε = ρ·g/‖g‖ (g = ∇L(w), global 2-norm over all parameters), gradient at w + ε,
then the base optimizer steps from w with that gradient. For ½wᵀAw this is A(w + ρ·Aw/‖Aw‖).
Costs a second forward/backward pass per step (≈ 2× the compute of the base optimizer). The
weights are restored by copy, so they end bit-identical; with `model` given, BatchNorm running
statistics are frozen during the second pass (as in the widely used PyTorch port of SAM), so each
step updates them once, from the unperturbed weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def _perturb(params: list[torch.Tensor], rho: float) -> None:
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    norm = nn.utils.get_total_norm(grads)
    torch._foreach_add_(params, torch._foreach_mul(grads, rho / (norm + 1e-12)))


def _bn_buffers(model: nn.Module | None) -> list[torch.Tensor]:
    if model is None:
        return []
    return [b for m in model.modules() if isinstance(m, _BatchNorm) for b in m.buffers()]


def sam_gradients(params: list[torch.Tensor], loss_closure: Callable[[], torch.Tensor], rho: float,
                  *, model: nn.Module | None = None) -> None:
    """Replace the `.grad` of `params` (already holding ∇L(w)) by ∇L(w + ε); weights end unchanged.

    `loss_closure` recomputes the loss at the current weights; pass `model` to keep its BatchNorm
    running statistics out of the perturbed pass.
    """
    with torch.no_grad():
        saved = [p.detach().clone() for p in params]
        buffers = _bn_buffers(model)
        saved_buffers = [b.clone() for b in buffers]
    _perturb(params, rho)
    for p in params:
        p.grad = None
    loss_closure().backward()
    with torch.no_grad():
        torch._foreach_copy_(params, saved)
        if buffers:
            torch._foreach_copy_(buffers, saved_buffers)
