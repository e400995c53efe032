"""Pieces shared by the model builders: the base class, normalisation layers, dropout sites, gates.

Normalisation (``model.norm``): ``"batch"`` is BatchNorm1d/2d; ``"layer"`` is LayerNorm over the
features for vectors and ``nn.GroupNorm(1, C)`` for conv maps — one group = normalisation over
(C, H, W) of each sample, i.e. LayerNorm of the whole map, with a per-channel affine; ``"none"``
inserts nothing (and conv/linear layers before it keep their bias).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import nn

from reglab.config import ConfigError, DropBlockConfig, DropoutConfig, StochasticDepthConfig
from reglab.regularize.dropblock import DropBlock2d
from reglab.regularize.dropout import Dropout
from reglab.regularize.stochastic_depth import Residual, make_gate, survival_probabilities

__all__ = ["MAX_SIZE", "Size", "ZooModel", "conv_norm", "dropblock_layer", "dropout_layer", "gates", "image_input",
           "linear_norm", "scaled", "seq", "site_probabilities"]

MAX_SIZE = 2**31 - 1
Size = Annotated[int, Field(le=MAX_SIZE)]
"""A width, channel count, depth or head count given as a model option. torch refuses sizes from 2**63 (a
TypeError deep in a layer's constructor); 2**31 − 1 is already far beyond any network that fits in memory."""


def scaled(size: int, factor: float, option: str) -> int:
    """`size` times the option `factor` (a width multiplier or ratio), rounded, at least 1, at most `MAX_SIZE`."""
    if size * factor > MAX_SIZE:
        raise ConfigError(f"model.options.{option}: a layer of {size} × {factor} units exceeds {MAX_SIZE} "
                          f"(got {factor})")
    return max(1, round(size * factor))


class ZooModel(nn.Sequential):
    """Base of every reglab model: an nn.Sequential that can list its residual blocks."""

    def residual_blocks(self) -> list[Residual]:
        """The model's `Residual` modules in depth order (empty for non-residual models)."""
        return [m for m in self.modules() if isinstance(m, Residual)]


def conv_norm(norm: str, channels: int) -> nn.Module | None:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)  # LayerNorm over (C, H, W)
    return None


def linear_norm(norm: str, features: int) -> nn.Module | None:
    if norm == "batch":
        return nn.BatchNorm1d(features)
    if norm == "layer":
        return nn.LayerNorm(features)
    return None


def site_probabilities(cfg: DropoutConfig, num_sites: int) -> list[float]:
    """Dropout probability at each of the model's `num_sites` sites (0.0 = no module there)."""
    if cfg.layers is not None:
        bad = [i for i in cfg.layers if not 0 <= i < num_sites]
        if bad:
            raise ConfigError(f"regularize.dropout.layers: site {bad[0]} out of range (the model has "
                              f"{num_sites} dropout sites: 0..{num_sites - 1})")
    if cfg.p > 0 and num_sites == 0:
        raise ConfigError("regularize.dropout: the model (with these options) has no dropout sites")
    used = set(range(num_sites) if cfg.layers is None else cfg.layers)
    return [cfg.p if i in used else 0.0 for i in range(num_sites)]


def dropout_layer(p: float) -> Dropout | None:
    return Dropout(p) if p > 0 else None


def dropblock_layer(cfg: DropBlockConfig) -> DropBlock2d | None:
    return DropBlock2d(cfg.p, cfg.block_size) if cfg.p > 0 else None


def gates(num_blocks: int, cfg: StochasticDepthConfig) -> list:
    """One stochastic-depth gate (or None) per residual block, from the config's survival rule."""
    return [make_gate(p, cfg) for p in survival_probabilities(num_blocks, cfg)]


def image_input(input_shape: tuple[int, ...], model: str) -> tuple[tuple[int, int, int], nn.Module | None]:
    """(C, H, W) of an image input and the module that makes the batch 4-D ((H, W): one channel)."""
    if len(input_shape) == 2:
        return (1, *input_shape), nn.Unflatten(1, (1, input_shape[0]))  # (N, H, W) -> (N, 1, H, W)
    if len(input_shape) != 3:
        raise ConfigError(f"model.name: {model!r} needs image input (C, H, W) or (H, W), got per-sample "
                          f"shape {tuple(input_shape)}")
    return tuple(input_shape), None


def seq(*modules: nn.Module | None) -> list[nn.Module]:
    """The given modules without the Nones (optional layers left out)."""
    return [m for m in modules if m is not None]
