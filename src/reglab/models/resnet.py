"""`resnet20` and `resnet18`: residual networks for 32×32 images.

He, Zhang, Ren & Sun (2016), *Deep residual learning for image recognition*, CVPR:
  * `resnet20` — the paper's CIFAR network (Sec. 4.2, n = 3): conv3×3 16 stem, 3 stages × 3 basic
    blocks with 16/32/64 channels (stride 2 at stages 2 and 3), global average pool, FC. Shortcuts
    with a projection (1×1 conv + norm, option B) where the shape changes — the paper's CIFAR
    model uses zero-padding (option A); B adds 2.8k parameters (0.272M instead of 0.270M).
  * `resnet18` — the common CIFAR variant of the ImageNet ResNet-18 (as in kuangliu/pytorch-cifar):
    conv3×3 64 stem without max-pool, 4 stages × 2 basic blocks with 64/128/256/512 channels,
    projection shortcuts; 11.17M parameters for 10 classes.

Basic block (a `Residual`): ``ReLU(shortcut(x) + gate(body(x)))`` with body = conv3×3 → [norm] → ReLU
→ conv3×3 → [norm]; stochastic depth's linear rule runs over all blocks in depth order (Huang et
al. 2016 use the same form). Dropout site i: after the output activation of block i. DropBlock (if
p > 0): after every block of the last two stages (Ghiasi et al. 2018 use groups 3 and 4 of a
ResNet-50). `width` multiplies every channel count. Other image sizes work (global pooling).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from reglab.config import DropBlockConfig, DropoutConfig, StochasticDepthConfig
from reglab.models.common import (
    ZooModel,
    conv_norm,
    dropblock_layer,
    dropout_layer,
    gates,
    image_input,
    scaled,
    seq,
    site_probabilities,
)
from reglab.models.deeper_cnn import projection
from reglab.models.registry import register_model
from reglab.regularize.stochastic_depth import Residual, StochasticDepth


class ResNet(ZooModel):
    """stem → stages of basic blocks → global average pool → FC."""


def basic_block(c_in: int, c_out: int, stride: int, norm: str, gate: StochasticDepth | None,
                name: str) -> Residual:
    """(N, c_in, H, W) -> (N, c_out, H/stride, W/stride)."""
    bias = norm == "none"
    body = nn.Sequential(*seq(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias), conv_norm(norm, c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias), conv_norm(norm, c_out)))
    shortcut = projection(c_in, c_out, norm, stride) if stride != 1 or c_in != c_out else None
    return Residual(body, shortcut, gate=gate, post=nn.ReLU(), name=name)


def resnet(input_shape: tuple[int, ...], num_outputs: int, norm: str, dropout: DropoutConfig,
           stochastic_depth: StochasticDepthConfig, dropblock: DropBlockConfig, *, name: str,
           stem: int, stages: tuple[int, ...], blocks: int, width: float) -> ResNet:
    (c, _, _), prep = image_input(input_shape, name)
    stem, stages = scaled(stem, width, "width"), tuple(scaled(s, width, "width") for s in stages)
    n_blocks = len(stages) * blocks
    block_gates = iter(gates(n_blocks, stochastic_depth))
    drop_probs = iter(site_probabilities(dropout, n_blocks))

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if prep is not None:
        layers["unflatten"] = prep  # (N, H, W) -> (N, 1, H, W)
    layers["stem"] = nn.Sequential(*seq(  # (N, C, H, W) -> (N, stem, H, W)
        nn.Conv2d(c, stem, 3, padding=1, bias=norm == "none"), conv_norm(norm, stem), nn.ReLU()))
    c_in = stem
    for s, c_out in enumerate(stages, start=1):
        stage: list[nn.Module] = []
        for b in range(1, blocks + 1):
            stride = 2 if s > 1 and b == 1 else 1
            stage.append(basic_block(c_in, c_out, stride, norm, next(block_gates), f"layer{s}.{b}"))
            if s > len(stages) - 2:
                stage += seq(dropblock_layer(dropblock))
            stage += seq(dropout_layer(next(drop_probs)))
            c_in = c_out
        layers[f"layer{s}"] = nn.Sequential(*stage)  # (N, c_out, H/2^(s-1), W/2^(s-1)) for s ≥ 1
    layers["pool"] = nn.AdaptiveAvgPool2d(1)  # (N, C, h, w) -> (N, C, 1, 1)
    layers["flatten"] = nn.Flatten()  # (N, C)
    layers["fc"] = nn.Linear(c_in, num_outputs)  # (N, num_outputs)
    return ResNet(layers)


@register_model("resnet20", description="CIFAR ResNet-20 (He et al. 2016), 16/32/64 channels, 0.27M params",
                residual=True, dropout_sites="after each block's output activation (9 sites)", dropblock=True)
def build_resnet20(*, input_shape: tuple[int, ...], num_outputs: int, norm: str, dropout: DropoutConfig,
                   stochastic_depth: StochasticDepthConfig, dropblock: DropBlockConfig,
                   width: float = 1.0) -> ResNet:
    return resnet(input_shape, num_outputs, norm, dropout, stochastic_depth, dropblock, name="resnet20",
                  stem=16, stages=(16, 32, 64), blocks=3, width=width)


@register_model("resnet18", description="ResNet-18, CIFAR variant (3×3 stem, no max-pool), 11.2M params",
                residual=True, dropout_sites="after each block's output activation (8 sites)", dropblock=True)
def build_resnet18(*, input_shape: tuple[int, ...], num_outputs: int, norm: str, dropout: DropoutConfig,
                   stochastic_depth: StochasticDepthConfig, dropblock: DropBlockConfig,
                   width: float = 1.0) -> ResNet:
    return resnet(input_shape, num_outputs, norm, dropout, stochastic_depth, dropblock, name="resnet18",
                  stem=64, stages=(64, 128, 256, 512), blocks=2, width=width)
