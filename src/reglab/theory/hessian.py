"""Sharpness from Hessian-vector products: H·v, the top eigenvalue (Lanczos), the trace (Hutchinson).

H = ∇²_θ L(θ) of the mean loss L = loss_fn(model(x), y) over the trainable parameters, evaluated with
the model in eval mode (deterministic: no dropout masks, BatchNorm running statistics). H·v is
Pearlmutter's trick by double backward, ∇_θ⟨∇_θ L, v⟩; the gradient graph is built once per call and
reused for every product.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Hvp = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def _hvp_operator(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor
                  ) -> tuple[list[torch.Tensor], Hvp]:
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    try:
        loss = loss_fn(model(x), y)
    finally:
        model.train(was_training)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    pairs = [(g, i) for i, g in enumerate(grads) if g.requires_grad]  # constant gradients add nothing

    def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
        if not pairs:
            return [torch.zeros_like(p) for p in params]
        return list(torch.autograd.grad([g for g, _ in pairs], params, grad_outputs=[v[i] for _, i in pairs],
                                        retain_graph=True, allow_unused=True, materialize_grads=True))

    return params, hvp


def hessian_vector_product(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                           v: list[torch.Tensor] | torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
    """H·v; `v` one tensor per trainable parameter (returns the same), or one flat vector (returns flat)."""
    params, hvp = _hvp_operator(model, loss_fn, x, y)
    if isinstance(v, torch.Tensor):
        parts = [c.view_as(p) for c, p in zip(v.split([p.numel() for p in params]), params, strict=True)]
        return torch.cat([h.flatten() for h in hvp(parts)])
    return hvp(list(v))


def hessian_top_eigenvalue(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                           iters: int = 100, tol: float = 1e-4, generator: torch.Generator | None = None
                           ) -> float:
    """Largest *algebraic* eigenvalue λ_max(H) by implicitly restarted Lanczos on H·v products.

    ``scipy.sparse.linalg.eigsh(which="LA")`` (ARPACK) on a LinearOperator, float64 on the host:
    unlike plain power iteration, which finds the eigenvalue of largest |λ|, it returns λ_max even
    when a negative eigenvalue dominates in magnitude. `iters`: ARPACK restarts (maxiter); `tol`:
    relative accuracy; `generator` draws the start vector. Raises if ARPACK does not converge.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    params, hvp = _hvp_operator(model, loss_fn, x, y)
    sizes = [p.numel() for p in params]
    n = sum(sizes)

    def matvec(v: np.ndarray) -> np.ndarray:
        flat = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).ravel()).to(params[0])
        parts = [c.view_as(p) for c, p in zip(flat.split(sizes), params, strict=True)]
        return torch.cat([h.flatten() for h in hvp(parts)]).double().cpu().numpy()

    v0 = torch.randn(n, generator=generator, dtype=torch.float64).numpy()
    operator = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    top = eigsh(operator, k=1, which="LA", v0=v0, maxiter=iters, tol=tol, return_eigenvectors=False)
    return float(top[0])


def hessian_trace(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *, samples: int = 100,
                  generator: torch.Generator | None = None) -> tuple[float, float]:
    """Hutchinson: tr H = E[vᵀHv], v Rademacher (±1 entries). Returns (mean of `samples` draws, its standard
    error s/√samples); the variance of one draw is 2 Σ_{i≠j} H_ij²."""
    if samples < 2:
        raise ValueError("hessian_trace needs samples ≥ 2 for a standard error")
    params, hvp = _hvp_operator(model, loss_fn, x, y)
    values = []
    for _ in range(samples):
        v = [torch.randint(0, 2, p.shape, generator=generator,
                           device=generator.device if generator is not None else p.device).to(p) * 2 - 1
             for p in params]
        values.append(sum((a * b).sum() for a, b in zip(v, hvp(v), strict=True)))
    values = torch.stack(values).double()
    return values.mean().item(), values.std().item() / math.sqrt(samples)
