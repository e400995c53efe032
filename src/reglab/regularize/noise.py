"""Gaussian input noise: training with noise. Bishop (1995), *Training with noise is equivalent to
Tikhonov regularization*, Neural Computation 7(1); Goodfellow, Bengio & Courville (2016), *Deep
Learning*, §7.5.

Each training batch's inputs become ``x + σ·ε``, ε ~ N(0, I) elementwise, drawn afresh every step
from torch's global generator (as dropout's masks). For a linear model f(x) = Wx + b and squared
error the noise is, in expectation, a penalty on the weights:

    E_ε ‖W(x + σε) + b − y‖² = ‖Wx + b − y‖² + σ²‖W‖²_F

(the cross term vanishes since E[ε] = 0, and E‖Wε‖² = tr(WᵀW)); for a nonlinear model, to order
σ², a Tikhonov penalty on the network's input derivatives (Bishop 1995).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["add_input_noise"]


def add_input_noise(x: Tensor, sigma: float | Tensor) -> Tensor:
    """``x + σ·ε``, ε ~ N(0, I) of x's shape from torch's global generator (`torch.randn`, in x's
    logical order whatever its memory layout). `sigma`: a float, or a tensor that broadcasts against
    x — a pack's ``(K, 1, …)`` per-run σ on its ``(K, B, …)`` batch, one draw for all runs."""
    return x + sigma * torch.randn(x.shape, dtype=x.dtype, device=x.device)
