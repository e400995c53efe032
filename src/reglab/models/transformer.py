"""`transformer`: a small Transformer-encoder classifier for sequences (e.g. mnist1d's 40 samples).

Vaswani et al. (2017), *Attention is all you need* (encoder, dropout on each sub-layer's output
before it is added to the residual stream); pre-LN vs post-LN: Xiong et al. (2020), *On layer
normalization in the Transformer architecture*.

    input (N, L) scalars or (N, L, F) → Linear(F, d_model) per position + learned positional embedding
    → depth × [attention sub-layer, MLP sub-layer] → [final LayerNorm if pre-LN] → mean over positions
    → Linear(d_model, num_outputs)

Sub-layers (each a `Residual`, so each is gated by stochastic depth; 2·depth blocks in depth order:
layer 0 attention, layer 0 MLP, layer 1 attention, …):
  * pre-LN:  x + gate(drop(f(LN(x))));   post-LN: LN(x + gate(drop(f(x))))
with f = multi-head self-attention (written out with matmul/softmax so it runs under vmap; no mask)
or MLP = Linear(d, mlp_ratio·d) → GELU → Linear(mlp_ratio·d, d). Dropout sites: 2i = attention
output of layer i, 2i + 1 = MLP output of layer i. Norm: LayerNorm only.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from reglab.config import ConfigError, DropBlockConfig, DropoutConfig, StochasticDepthConfig
from reglab.models.common import Size, ZooModel, dropout_layer, gates, scaled, seq, site_probabilities
from reglab.models.registry import register_model
from reglab.regularize.stochastic_depth import Residual


class Transformer(ZooModel):
    """embedding → encoder sub-layers → mean-pool → head."""


class PositionalEmbedding(nn.Module):
    """Adds a learned (L, d) positional embedding (init N(0, 0.02²), as in BERT/ViT)."""

    def __init__(self, length: int, d_model: int):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(length, d_model) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos  # (N, L, d)


class SelfAttention(nn.Module):
    """Multi-head self-attention, softmax(QKᵀ/√d_head)·V per head, then an output projection."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        qkv = self.qkv(x).view(n, length, 3, self.heads, d // self.heads)  # (N, L, 3, H, d_h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, H, L, d_h)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)  # (N, H, L, L)
        y = (att @ v).transpose(1, 2).reshape(n, length, d)  # (N, L, d)
        return self.out(y)


class MeanPool(nn.Module):
    """Mean over the sequence positions: (N, L, d) -> (N, d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


@register_model("transformer", description="small Transformer encoder classifier for sequences (pre/post-LN)",
                residual=True, dropout_sites="attention output and MLP output of each layer (2·depth sites)",
                norms=("layer",), default_norm="layer")
def build_transformer(*, input_shape: tuple[int, ...], num_outputs: int, norm: str, dropout: DropoutConfig,
                      stochastic_depth: StochasticDepthConfig, dropblock: DropBlockConfig,
                      depth: Size = 2, d_model: Size = 64, heads: Size = 4, mlp_ratio: float = 4.0,
                      pre_ln: bool = True) -> Transformer:
    if len(input_shape) not in (1, 2):
        raise ConfigError(f"model.name: 'transformer' needs sequence input (L,) or (L, F), got per-sample "
                          f"shape {tuple(input_shape)}")
    if depth < 1 or d_model < 1 or heads < 1 or d_model % heads:
        raise ConfigError(f"model.options.heads: d_model ({d_model}) must be a positive multiple of heads "
                          f"({heads}), depth ≥ 1 (got {depth})")
    length, features = input_shape[0], input_shape[1] if len(input_shape) == 2 else 1
    hidden = scaled(d_model, mlp_ratio, "mlp_ratio")
    block_gates = iter(gates(2 * depth, stochastic_depth))
    drop_probs = iter(site_probabilities(dropout, 2 * depth))

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if len(input_shape) == 1:
        layers["unflatten"] = nn.Unflatten(1, (length, 1))  # (N, L) -> (N, L, 1)
    layers["embed"] = nn.Linear(features, d_model)  # (N, L, F) -> (N, L, d)
    layers["pos"] = PositionalEmbedding(length, d_model)
    for i in range(depth):
        for kind in ("attn", "mlp"):
            f = SelfAttention(d_model, heads) if kind == "attn" else nn.Sequential(
                nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model))  # (N, L, d) -> (N, L, d)
            drop, gate = dropout_layer(next(drop_probs)), next(block_gates)
            if pre_ln:
                block = Residual(nn.Sequential(*seq(nn.LayerNorm(d_model), f, drop)), gate=gate,
                                 name=f"layer{i}.{kind}")
            else:
                block = Residual(nn.Sequential(*seq(f, drop)), gate=gate, post=nn.LayerNorm(d_model),
                                 name=f"layer{i}.{kind}")
            layers[f"layer{i}_{kind}"] = block  # (N, L, d)
    if pre_ln:
        layers["norm"] = nn.LayerNorm(d_model)
    layers["pool"] = MeanPool()  # (N, d)
    layers["head"] = nn.Linear(d_model, num_outputs)  # (N, num_outputs)
    return Transformer(layers)
