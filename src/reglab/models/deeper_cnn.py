"""`deeper_cnn`: the "seed-000" network of the seed-variance study.

A VGG-style plain CNN (Simonyan & Zisserman 2015) made residual with projection shortcuts (He et al.
2016, *Deep residual learning*, option B) so that every conv block — the first one included, whose
input has 1 or 3 channels and output 64 — can be skipped by stochastic depth (Huang et al. 2016):

    conv block i (residual=True):  y = proj(x) + body(x),   body = conv3×3 → [norm] → ReLU,
                                                            proj = conv1×1 → [norm]
    then [DropBlock] → MaxPool 2×2;   with residual=False the block is just body(x).

With residual=False and `replace_skip=True`, a block that stochastic depth selects takes the form of
source 000 (the MNIST DeeperCNN comparison) instead: while training it is *replaced* by the
parameter-free identity with probability 1 − p (y = pad(x), x zero-padded to the block's channels, He
et al.'s option A), else y = body(x); at test y = p·body(x) + (1 − p)·pad(x). No 1×1 convolutions.

Then Flatten → (Linear → ReLU → [Dropout]) per `fc_widths` → Linear classifier. Norm (default batch)
is used in the conv blocks only. Dropout site i: after the activation of hidden FC layer i; DropBlock
(if p > 0) after every conv block. Residual blocks: conv1, conv2, … (stochastic-depth indices 0, 1, …).
Works for any (C, H, W) with H, W ≥ 2^len(channels), e.g. 1×28×28 and 3×32×32.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from reglab.config import ConfigError, DropBlockConfig, DropoutConfig, StochasticDepthConfig
from reglab.models.common import (
    Size,
    ZooModel,
    conv_norm,
    dropblock_layer,
    dropout_layer,
    gates,
    image_input,
    seq,
    site_probabilities,
)
from reglab.models.registry import register_model
from reglab.regularize.dropout import uniform_dtype
from reglab.regularize.stochastic_depth import Residual, shortcut_error, survival_probabilities


class DeeperCNN(ZooModel):
    """Conv blocks (optionally residual) → FC layers → classifier."""

    def residual_blocks(self) -> list[nn.Module]:
        """The blocks stochastic depth can skip: the `Residual` ones, or the `ReplaceSkip` ones."""
        return super().residual_blocks() or [m for m in self.modules() if isinstance(m, ReplaceSkip)]


def replace_or_skip(body: nn.Module, x: torch.Tensor, p: float | torch.Tensor, *, mode: str,
                    training: bool) -> torch.Tensor:
    """`ReplaceSkip`'s block with survival probability `p`: a float, or a 0-dim tensor (a pack's per-run
    survival, `reglab.train.rates.RateReplaceSkip`)."""
    out = body(x)
    if not training:
        return blend_with_padded(out, x, p)
    lead = x.shape[0] if mode == "row" else 1
    keep = (torch.rand((lead, 1, 1, 1), dtype=uniform_dtype(out.dtype), device=out.device) < p).to(out.dtype)
    return blend_with_padded(out, x, keep)


def blend_with_padded(out: torch.Tensor, x: torch.Tensor, keep: float | torch.Tensor) -> torch.Tensor:
    """keep·out + (1 − keep)·pad(x), with x's C_in channels zero-padded to out's: the padded channels are
    keep·out, so the padded tensor is never built and the C_in channels alone get the second term (the
    same values as the padded formula; one pass over `out` where that took four)."""
    mixed = keep * out
    mixed[:, :x.shape[1]] += (1.0 - keep) * x
    return mixed


class ReplaceSkip(nn.Module):
    """Source 000's stochastic depth of one block: y = body(x) with probability `p`, else the identity
    (its channels zero-padded to the body's output); at test the expectation p·body(x) + (1 − p)·pad(x).

    `mode`: "batch" draws one keep/skip per batch (Huang et al.), "row" one per sample. Tensor ops only.
    """

    def __init__(self, body: nn.Module, p: float, mode: str = "batch"):
        super().__init__()
        self.body, self.p, self.mode = body, float(p), mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return replace_or_skip(self.body, x, self.p, mode=self.mode, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}, mode={self.mode}"


def conv_block(c_in: int, c_out: int, norm: str) -> nn.Sequential:
    """conv3×3 (stride 1, padding 1) → [norm] → ReLU: (N, c_in, H, W) -> (N, c_out, H, W)."""
    return nn.Sequential(*seq(nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"),
                              conv_norm(norm, c_out), nn.ReLU()))


def projection(c_in: int, c_out: int, norm: str, stride: int = 1) -> nn.Sequential:
    """conv1×1 → [norm]: the shortcut of a block whose channels (or resolution) change."""
    return nn.Sequential(*seq(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=norm == "none"),
                              conv_norm(norm, c_out)))


@register_model("deeper_cnn", description="3 conv blocks 64/128/256 (+ projection shortcuts) → FC 512 → out",
                residual=True, dropout_sites="after each hidden FC activation", dropblock=True,
                depth_options=("replace_skip",))
def build_deeper_cnn(*, input_shape: tuple[int, ...], num_outputs: int, norm: str, dropout: DropoutConfig,
                     stochastic_depth: StochasticDepthConfig, dropblock: DropBlockConfig,
                     channels: tuple[Size, ...] = (64, 128, 256), fc_widths: tuple[Size, ...] = (512,),
                     residual: bool = True, replace_skip: bool = False) -> DeeperCNN:
    (c, h, w), prep = image_input(input_shape, "deeper_cnn")
    n = len(channels)
    if n == 0 or min(h, w) < 2 ** n:
        raise ConfigError(f"model.options.channels: {n} conv blocks (each halving H, W) need an input of at "
                          f"least {2 ** n}×{2 ** n} (got {h}×{w})")
    probs = survival_probabilities(n, stochastic_depth)
    if replace_skip and (residual or stochastic_depth.scaling != "test"):
        raise ConfigError("model.options.replace_skip needs model.options.residual = false and "
                          "regularize.stochastic_depth.scaling = 'test' (source 000's expectation at test time)")
    if not residual and not replace_skip:
        for i, p in enumerate(probs):
            if p < 1.0:
                c_in = c if i == 0 else channels[i - 1]
                hw = (h // 2 ** i, w // 2 ** i)
                raise shortcut_error(f"conv{i + 1}", (c_in, *hw), (channels[i], *hw),
                                     hint="set model.options.residual = true")
    block_gates = gates(n, stochastic_depth) if residual else [None] * n

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if prep is not None:
        layers["unflatten"] = prep  # (N, H, W) -> (N, 1, H, W)
    c_in = c
    for i, (c_out, gate) in enumerate(zip(channels, block_gates, strict=True), start=1):
        body = conv_block(c_in, c_out, norm)  # (N, c_in, H, W) -> (N, c_out, H, W)
        if residual:
            layers[f"conv{i}"] = Residual(body, projection(c_in, c_out, norm), gate=gate, name=f"conv{i}")
        elif replace_skip and probs[i - 1] < 1.0:
            if c_out < c_in:
                raise ConfigError(f"model.options.replace_skip: conv{i} has fewer output than input channels "
                                  f"({c_in} -> {c_out}); the identity cannot be zero-padded to it")
            layers[f"conv{i}"] = ReplaceSkip(body, probs[i - 1], stochastic_depth.mode)
        else:
            layers[f"conv{i}"] = body
        if (db := dropblock_layer(dropblock)) is not None:
            layers[f"dropblock{i}"] = db
        layers[f"pool{i}"] = nn.MaxPool2d(2)  # (N, c_out, H, W) -> (N, c_out, H/2, W/2)
        c_in, h, w = c_out, h // 2, w // 2
    layers["flatten"] = nn.Flatten()  # (N, C, H, W) -> (N, C·H·W)
    d_in = c_in * h * w
    for i, (width, p) in enumerate(zip(fc_widths, site_probabilities(dropout, len(fc_widths)), strict=True),
                                   start=1):
        layers[f"fc{i}"] = nn.Linear(d_in, width)  # (N, d_in) -> (N, width)
        layers[f"relu_fc{i}"] = nn.ReLU()
        if (drop := dropout_layer(p)) is not None:
            layers[f"dropout{i}"] = drop
        d_in = width
    layers["classifier"] = nn.Linear(d_in, num_outputs)  # (N, d_in) -> (N, num_outputs)
    return DeeperCNN(layers)
