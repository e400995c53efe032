"""Stochastic depth: Huang, Sun, Liu, Sedra & Weinberger (2016), *Deep networks with stochastic depth*, ECCV.

A residual block ``y = shortcut(x) + f(x)`` keeps its branch ``f`` with survival probability p_l while
training and is reduced to ``y = shortcut(x)`` otherwise (followed by the block's post-activation,
if any, as in the paper's ``H_l = ReLU(b_l·f_l(H_{l−1}) + id(H_{l−1}))``).

* `survival_probabilities` — p_l for every block of a network from a `StochasticDepthConfig`;
* `StochasticDepth`       — the random gate applied to a branch output;
* `Residual`               — ``post(shortcut(x) + gate(body(x)))``.

Everything here is written with tensor operations only (no ``.item()``, no Python branch on a random
value), so a model can be run under ``torch.func.vmap(..., randomness="different")`` and every
vmapped copy draws its own masks.

**Selected blocks.** With ``cfg.blocks`` given, the rule runs over the *selected* blocks only, in
depth order: L = the number of selected blocks and l = 1..L their rank, so the last selected block
survives with 1 − rate (blocks=[0] with rate 0.5 drops the first block half of the time, whatever
the depth). Blocks not selected survive with probability 1 (no gate).
"""

from __future__ import annotations

import torch
from torch import nn

from reglab.config import ConfigError, StochasticDepthConfig
from reglab.regularize.dropout import uniform_dtype

__all__ = ["Residual", "StochasticDepth", "gate_branch", "make_gate", "shortcut_error", "survival_probabilities"]


def survival_probabilities(num_blocks: int, cfg: StochasticDepthConfig) -> list[float]:
    """Survival probability p_l of each of `num_blocks` blocks (depth order), 1.0 = never dropped.

    linear: p_l = 1 − (l/L)·rate for l = 1..L; constant: p_l = 1 − rate. With ``cfg.blocks`` L and l
    count the selected blocks only (see the module docstring); an index outside [0, num_blocks) is a
    ConfigError naming ``regularize.stochastic_depth.blocks``.
    """
    if cfg.blocks is None:
        selected = list(range(num_blocks))
    else:
        bad = [b for b in cfg.blocks if not 0 <= b < num_blocks]
        if bad:
            raise ConfigError(f"regularize.stochastic_depth.blocks: index {bad[0]} out of range "
                              f"(the model has {num_blocks} residual blocks: 0..{num_blocks - 1})")
        selected = sorted(set(cfg.blocks))
    probs = [1.0] * num_blocks
    big_l = len(selected)
    for rank, block in enumerate(selected, start=1):
        drop = cfg.rate * rank / big_l if cfg.rule == "linear" else cfg.rate
        probs[block] = 1.0 - drop
    return probs


class StochasticDepth(nn.Module):
    """Random gate of a residual branch with survival probability `p` (p = 1: identity).

    Training: ``branch · b`` with ``b ~ Bernoulli(p)`` per sample (`mode="row"`, timm's DropPath) or
    one draw for the whole batch (`mode="batch"`, the paper's); `scaling="inverted"` divides by p
    while training and is the identity at eval, `scaling="test"` (the paper's) is unscaled while
    training and multiplies the branch by p at eval. Both have the same expectation.
    """

    def __init__(self, p: float, mode: str = "row", scaling: str = "inverted"):
        super().__init__()
        if not 0.0 < p <= 1.0:
            raise ValueError(f"survival probability must lie in (0, 1] (got {p})")
        if mode not in ("row", "batch") or scaling not in ("inverted", "test"):
            raise ValueError(f"mode must be row|batch and scaling inverted|test (got {mode}, {scaling})")
        self.p, self.mode, self.scaling = float(p), mode, scaling

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if self.p == 1.0:  # a constant of the module, not a random value
            return branch
        return gate_branch(branch, self.p, mode=self.mode, scaling=self.scaling, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}, mode={self.mode}, scaling={self.scaling}"


def gate_branch(branch: torch.Tensor, p: float | torch.Tensor, *, mode: str, scaling: str,
                training: bool) -> torch.Tensor:
    """`StochasticDepth`'s gate with survival probability `p`: a float, or a 0-dim tensor (a pack's
    per-run survival, `reglab.train.rates.RateGate`)."""
    if not training:
        return branch * p if scaling == "test" else branch
    lead = branch.shape[0] if mode == "row" else 1
    shape = (lead,) + (1,) * (branch.dim() - 1)  # (N, 1, …, 1) or (1, …, 1)
    keep = (torch.rand(shape, dtype=uniform_dtype(branch.dtype), device=branch.device) < p).to(branch.dtype)
    if scaling == "inverted":
        keep = keep / p
    return branch * keep


def make_gate(p: float, cfg: StochasticDepthConfig) -> StochasticDepth | None:
    """A gate for survival probability `p`, or None when p = 1 (no module: the plain network)."""
    return None if p >= 1.0 else StochasticDepth(p, mode=cfg.mode, scaling=cfg.scaling)


def shortcut_error(name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   hint: str = "") -> ConfigError:
    """The ConfigError for a block that changes shape without a shortcut and so cannot be skipped."""
    return ConfigError(f"regularize.stochastic_depth: block {name} changes shape {tuple(in_shape)} -> "
                       f"{tuple(out_shape)} and has no shortcut; it cannot be skipped"
                       + (f" ({hint})" if hint else "; exclude it with regularize.stochastic_depth.blocks"))


class Residual(nn.Module):
    """``y = post(shortcut(x) + gate(body(x)))``.

    `shortcut`: None = identity, or a projection module (e.g. 1×1 conv + norm); `gate`: a
    `StochasticDepth` or None (never dropped); `post`: an optional module after the sum (ResNet's
    ReLU, post-LN's LayerNorm). A dropped block outputs ``post(shortcut(x))``.

    With `in_shape`/`out_shape` (per-sample shapes, known at build time) an identity shortcut on a
    shape-changing body fails at construction with the ConfigError of `shortcut_error`; otherwise
    the same check runs at forward time (a shape comparison, not data-dependent).
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, *,
                 gate: StochasticDepth | None = None, post: nn.Module | None = None, name: str = "",
                 in_shape: tuple[int, ...] | None = None, out_shape: tuple[int, ...] | None = None):
        super().__init__()
        if shortcut is None and in_shape is not None and out_shape is not None \
                and tuple(in_shape) != tuple(out_shape):
            raise shortcut_error(name or type(body).__name__, in_shape, out_shape)
        self.body = body
        self.shortcut = shortcut
        self.gate = gate
        self.post = post
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.gate is not None:
            out = self.gate(out)
        if self.shortcut is not None:
            skip = self.shortcut(x)
        elif out.shape != x.shape:
            raise shortcut_error(self.name or type(self.body).__name__, x.shape[1:], out.shape[1:])
        else:
            skip = x
        # body first (the same sum): the result takes its first operand's memory layout, and a 1×1
        # projection of a one-channel input has ambiguous strides, so it would hand a channels-last
        # network (every conv net on CPU) an NCHW activation
        y = out + skip
        return y if self.post is None else self.post(y)

    def extra_repr(self) -> str:
        return f"name={self.name!r}" if self.name else ""
