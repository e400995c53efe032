"""Dropout's regularizers R1 (learning-rate independent) and R2 (from the step size), and the objectives
built on them.

Zhang & Xu, *Implicit regularization of dropout*, arXiv:2207.05952 (IEEE TPAMI 2024). Their setting
is dropout on the last hidden layer: with features h = f^{[L−1]}(x) ∈ R^m,

    f^η(x) = W^{[L]} (η ⊙ h) + b,   η_j = 1/q with probability q, else 0  (i.i.d. per sample and unit),

where q = 1 − p is the **keep** probability (PyTorch's nn.Dropout(p) with inverted scaling), so
E η_j = 1 and Var η_j = (1 − q)/q. The loss is reglab's ``mse``, R_S(θ) = 1/(2n) Σ_i ‖f(x_i) − y_i‖²;
R_drop(θ, η) is the same loss of the dropout network f^η.

* R1, the term the source credits as dropout's implicit regularization (its Lemma; exact for ``mse``;
  independent of the learning rate, so it acts even under gradient flow):
  E_η R_drop(θ, η) = R_S(θ) + R_1(θ),  R_1(θ) = (1 − q)/(2nq) Σ_i Σ_j ‖W_j^{[L]} h_j(x_i)‖²,
  with W_j the j-th column of W^{[L]}. Derivation: f^η − f = Σ_j (η_j − 1) h_j W_j has mean 0 and
  independent terms, so E ½‖f^η − y‖² = ½‖f − y‖² + ½ Σ_j Var(η_j) h_j² ‖W_j‖². The output bias
  is added after the mask and does not enter.
* R2, the learning-rate-dependent term (from discretising the flow; vanishes as ε → 0): gradient
  descent with step ε on R_drop (a fresh η every step)
  follows, to first order in ε, the modified gradient flow of E_η R_drop + R_2 (backward error
  analysis, Barrett & Dherin 2021; Smith et al. 2021 for SGD), R_2(θ) = (ε/4) E_η ‖∇_θ R_drop(θ, η)‖².
* The training objectives of the paper's disentangling experiment (``train.objective``):
  ``rs``  R_S (dropout off);                    ``drop`` R_drop (ordinary dropout);
  ``rs+r1`` L1 = R_S + R_1 (the R1 effect only); ``rs+r2`` L2 = R_S + R_2 (the R2 effect only);
  ``drop-r2`` L3 = R_drop − R_2 (dropout with its R2 term cancelled);
  ``drop-r1`` L4 = R_drop − R_1 (dropout with its R1 term cancelled: E_η L4 = R_S).
  L1–L4 are the source's eq. (1.1), with R_2 estimated by one mask draw (its R̃_2).

Naming: the source (Zhang & Xu) calls both terms implicit regularization of dropout and credits R1;
Wei, Kakade & Ma (ICML 2020) call the R1-type expected-loss term "explicit" and the noise-driven one
"implicit". reglab follows the source and names the terms R1 and R2 (docs/theory.md).

Several dropout layers: R1 uses the features entering the *last* nn.Dropout computed with every
earlier layer in the mode it is in. Conditioning on the earlier masks, the derivation above gives
E[R_drop] = E[R_S with only the last dropout off] + E[R_1], so E_η R_drop = R_S^{eval} + R_1 is exact
only when the last dropout is the only active one (or the model's earlier dropouts are in eval mode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from reglab.config import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OBJECTIVES = ("drop", "rs", "rs+r1", "rs+r2", "drop-r2", "drop-r1")
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  nn.FeatureAlphaDropout)


@contextlib.contextmanager
def dropout_mode(model: nn.Module, active: bool) -> Iterator[nn.Module]:
    """Temporarily put every dropout module in train (`active`) or eval mode; all else unchanged."""
    modules = [m for m in model.modules() if isinstance(m, _DROPOUT_TYPES)]
    saved = [m.training for m in modules]
    for m in modules:
        m.train(active)
    try:
        yield model
    finally:
        for m, training in zip(modules, saved, strict=True):
            m.train(training)


def dropout_disabled(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """`with dropout_disabled(model):` — dropout noise off, BatchNorm etc. left in their current mode."""
    return dropout_mode(model, False)


@dataclass
class _Tap:
    """What one forward pass showed about the last dropout: its input h, the module, the Linear it feeds."""

    h: torch.Tensor
    dropout: nn.Dropout
    linear: nn.Linear


def _forward_tapped(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, _Tap]:
    """Run `model(x)` with hooks, and find the last dropout and the nn.Linear its output goes into.

    Any module shape works (hooks, not the module tree): R1 needs that the last dropout to run is an
    nn.Dropout whose output is the input of an nn.Linear whose output is the model's output.
    """
    root = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: hooks need the eager module
    names = {m: n for n, m in root.named_modules()}
    calls: list[tuple[nn.Module, object, object]] = []  # (module, first input, output) in call order
    unmasked: dict[nn.Module, torch.Tensor] = {}  # an in-place dropout's input, copied before it is masked

    def keep_input(module: nn.Module, inputs: tuple) -> None:
        if inputs and getattr(module, "inplace", False):
            unmasked[module] = inputs[0].clone()

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        calls.append((module, unmasked.pop(module, inputs[0] if inputs else None), output))

    leaves = [m for m in root.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    handles += [m.register_forward_pre_hook(keep_input) for m in leaves if isinstance(m, _DROPOUT_TYPES)]
    try:
        out = root(x)
    finally:
        for handle in handles:
            handle.remove()
    drops = [i for i, (m, _, _) in enumerate(calls) if isinstance(m, _DROPOUT_TYPES)]
    prefix = "R1 needs the last dropout to be an nn.Dropout feeding the nn.Linear that gives the model's output"
    if not drops:
        raise ConfigError(f"{prefix}; this model ran no dropout module")
    last = drops[-1]
    dropout, h, dropped = calls[last]
    where = f"the last dropout (module {names[dropout]!r})"
    if not isinstance(dropout, nn.Dropout):
        raise ConfigError(f"{prefix}; {where} is {type(dropout).__name__}")
    consumer = next(((m, o) for m, i, o in calls[last + 1:] if i is dropped), None)
    if consumer is None:
        raise ConfigError(f"{prefix}; the output of {where} goes into no module")
    linear, linear_out = consumer
    if not isinstance(linear, nn.Linear):
        raise ConfigError(f"{prefix}; {where} feeds {type(linear).__name__} ({names[linear]!r})")
    if linear_out is not out:
        raise ConfigError(f"{prefix}; {where} feeds nn.Linear {names[linear]!r}, which is not the model's output layer")
    return out, _Tap(h, dropout, linear)


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (autocast outputs may be bfloat16); float64 stays float64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _r1(h: torch.Tensor, dropout: nn.Dropout, linear: nn.Linear) -> torch.Tensor:
    keep = 1.0 - dropout.p
    if keep <= 0:
        raise ConfigError("R1 is undefined for dropout p = 1 (keep probability 0)")
    column_norms2 = _upcast(linear.weight).pow(2).sum(0)  # ‖W_j‖²
    per_sample = (_upcast(h).pow(2) * column_norms2).flatten(1).sum(1)  # Σ_j ‖W_j h_j(x_i)‖²
    return (1.0 - keep) / (2.0 * keep) * per_sample.mean()


def dropout_r1(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """R_1 = (1 − q)/(2nq) Σ_i Σ_j ‖W_j^{[L]} f_j^{[L−1]}(x_i)‖², q = keep probability of the last dropout.

    `model`: any module whose last dropout to run is an nn.Dropout feeding the nn.Linear that gives
    the output (found with forward hooks); other shapes are refused with the reason. Runs one forward
    pass with every layer in the mode it is in (see the module docstring); differentiable in θ.
    """
    _, tap = _forward_tapped(model, x)
    return _r1(tap.h, tap.dropout, tap.linear)


def _r2(loss: torch.Tensor, model: nn.Module, lr: float) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    return lr / 4.0 * sum(g.pow(2).sum() for g in grads if g is not None)


def dropout_r2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float,
               loss_fn: LossFn) -> torch.Tensor:
    """(ε/4)‖∇_θ R_drop(θ, η)‖² for ONE draw of the dropout masks η, ε = `lr`: an unbiased estimate of R_2.

    Dropout modules run in train mode (other modules as they are); the gradient is taken with
    ``create_graph=True`` so the result can be differentiated again (double backward).
    """
    with dropout_mode(model, True):
        loss = loss_fn(_upcast(model(x)), y)
    return _r2(loss, model, lr)


def objective_loss(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss_fn: LossFn,
                   lr: float | None = None) -> torch.Tensor:
    """Training objective `name` ∈ OBJECTIVES on a batch (see the module docstring); ε = `lr`.

    ``rs``/``rs+r1`` evaluate with dropout off; ``rs+r2`` draws its own masks for R2. ``drop-r2``
    subtracts (ε/4)‖∇R_drop‖² of the *same* mask draw as its R_drop, so one gradient step on it has
    no first-order implicit term; ``drop-r1`` takes R1 from the same forward pass as R_drop.
    `loss_fn(output, y)` returns the mean loss of the batch; `lr` is needed only by the R2 objectives.
    """
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")
    if name in ("rs+r2", "drop-r2") and lr is None:
        raise ConfigError(f"lr: objective {name!r} needs the step size ε of R2 = (ε/4)‖∇R_drop‖²")
    if name.startswith("rs"):
        with dropout_disabled(model):
            if name == "rs+r1":
                out, tap = _forward_tapped(model, x)
                return loss_fn(_upcast(out), y) + _r1(tap.h, tap.dropout, tap.linear)
            rs = loss_fn(_upcast(model(x)), y)
        return rs if name == "rs" else rs + dropout_r2(model, x, y, lr=lr, loss_fn=loss_fn)
    with dropout_mode(model, True):
        if name == "drop-r1":
            out, tap = _forward_tapped(model, x)
            return loss_fn(_upcast(out), y) - _r1(tap.h, tap.dropout, tap.linear)
        drop = loss_fn(_upcast(model(x)), y)
    return drop if name == "drop" else drop - _r2(drop, model, lr)
