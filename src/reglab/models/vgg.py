"""`vgg9`: a 9-weight-layer VGG network for small images.

Simonyan & Zisserman (2015), *Very deep convolutional networks for large-scale image recognition*;
the 9-layer variant of Wang et al. (2020), *Federated learning with matched averaging* (FedMA), ICLR,
used widely for CIFAR-10. Exact layer list (C = conv3×3 stride 1 padding 1 → [norm] → ReLU,
M = max-pool 2×2):

    C32, C64, M, C128, C128, M, C256, C256, M, FC512, FC512, FC(num_outputs)

6 conv + 3 FC = 9 weight layers (3.49M parameters at 32×32, 10 classes). Norm (default batch)
after every conv, not in the FC layers. Dropout site i: after the ReLU of hidden FC layer i (two
sites: between the FC layers). DropBlock (if p > 0): after each conv stage, before its pool.
`width` multiplies the conv channel counts.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from reglab.config import ConfigError, DropBlockConfig, DropoutConfig, StochasticDepthConfig
from reglab.models.common import (
    ZooModel,
    conv_norm,
    dropblock_layer,
    dropout_layer,
    image_input,
    scaled,
    seq,
    site_probabilities,
)
from reglab.models.registry import register_model

STAGES = ((32, 64), (128, 128), (256, 256))  # conv channels per stage; each stage ends with M
FC = (512, 512)


class VGG(ZooModel):
    """conv stages → FC layers (no residual blocks)."""


@register_model("vgg9", description="VGG-9 (FedMA): C32 C64 M C128 C128 M C256 C256 M FC512 FC512 FC",
                residual=False, dropout_sites="after each hidden FC activation (2 sites)", dropblock=True)
def build_vgg9(*, input_shape: tuple[int, ...], num_outputs: int, norm: str, dropout: DropoutConfig,
               stochastic_depth: StochasticDepthConfig, dropblock: DropBlockConfig,
               width: float = 1.0) -> VGG:
    (c_in, h, w), prep = image_input(input_shape, "vgg9")
    if min(h, w) < 2 ** len(STAGES):
        raise ConfigError(f"model.name: 'vgg9' needs images of at least 8×8 (got {h}×{w})")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if prep is not None:
        layers["unflatten"] = prep  # (N, H, W) -> (N, 1, H, W)
    k = 0
    for s, stage in enumerate(STAGES, start=1):
        for c in stage:
            k += 1
            c_out = scaled(c, width, "width")
            layers[f"conv{k}"] = nn.Sequential(*seq(  # (N, c_in, H, W) -> (N, c_out, H, W)
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"), conv_norm(norm, c_out), nn.ReLU()))
            c_in = c_out
        if (db := dropblock_layer(dropblock)) is not None:
            layers[f"dropblock{s}"] = db
        layers[f"pool{s}"] = nn.MaxPool2d(2)  # (N, C, H, W) -> (N, C, H/2, W/2)
        h, w = h // 2, w // 2
    layers["flatten"] = nn.Flatten()  # (N, C·H·W)
    d_in = c_in * h * w
    for i, (width_fc, p) in enumerate(zip(FC, site_probabilities(dropout, len(FC)), strict=True), start=1):
        layers[f"fc{i}"] = nn.Linear(d_in, width_fc)  # (N, d_in) -> (N, 512)
        layers[f"relu_fc{i}"] = nn.ReLU()
        if (drop := dropout_layer(p)) is not None:
            layers[f"dropout{i}"] = drop
        d_in = width_fc
    layers["classifier"] = nn.Linear(d_in, num_outputs)  # (N, num_outputs)
    return VGG(layers)
