"""Max-norm constraint (Srebro & Shraibman 2005; Srivastava et al. 2014, JMLR, §5.1, used there with
dropout at c = 3–4): after every optimizer step each unit's incoming weight vector w — a row of a
Linear weight, one output filter of a Conv weight — is projected onto the ball ‖w‖₂ ≤ c,

    w ← w · c / (‖w‖₂ + 10⁻⁷)   where ‖w‖₂ > c,   unchanged otherwise   (`torch.renorm`'s rule).

It acts on the weights penalties act on by default (`penalized_parameters(…, "weights")`), never on
biases or normalisation parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

EPS = 1e-7
"""`torch.renorm` divides by ‖w‖₂ + 1e-7."""


@torch.no_grad()
def apply_max_norm(weights: Sequence[torch.Tensor], c: float) -> None:
    """Project each weight's units (its dim-0 slices) onto ‖w‖₂ ≤ c, in place."""
    for w in weights:
        w.copy_(torch.renorm(w, p=2, dim=0, maxnorm=c))


@torch.no_grad()
def apply_max_norm_stacked(weights: Sequence[torch.Tensor], c: torch.Tensor) -> None:
    """The same for K runs at once: weights ``(K, units, …)`` (as the network uses them), radii ``(K,)``
    (∞ for a run without the constraint: its weights stay as they are)."""
    for w in weights:
        norm = torch.linalg.vector_norm(w, dim=tuple(range(2, w.dim())), keepdim=True)
        radius = c.view(-1, *[1] * (w.dim() - 1))
        w.mul_(torch.where(norm > radius, radius / (norm + EPS), 1.0))
