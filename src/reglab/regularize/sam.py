"""Sharpness-aware minimisation (Foret et al. 2021, "Sharpness-Aware Minimization").

One SAM step: ε = ρ·g/‖g‖ at the current weights, gradient at w + ε, then the base optimizer
steps from w with that gradient. Costs two forward/backward passes per step. BatchNorm running
statistics are updated by both passes (as in the reference implementation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


@torch.no_grad()
def _perturb(params: list[torch.Tensor], rho: float) -> list[torch.Tensor]:
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = rho / (norm + 1e-12)
    eps = [g * scale for g in grads]
    torch._foreach_add_(params, eps)
    return eps


def sam_gradients(params: list[torch.Tensor], loss_closure: Callable[[], torch.Tensor], rho: float) -> None:
    """Replace the `.grad` of `params` (already holding ∇L(w)) by ∇L(w + ε); weights end unchanged."""
    eps = _perturb(params, rho)
    for p in params:
        p.grad = None
    loss_closure().backward()
    with torch.no_grad():
        torch._foreach_sub_(params, eps)
