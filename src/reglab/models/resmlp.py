"""`resmlp`: a residual MLP, the smallest model on which every regularizer of reglab applies.

Linear stem → `blocks` pre-activation residual blocks → [norm] → activation → [Dropout] → Linear.
Block i (a `Residual` with identity shortcut, so stochastic depth can skip it):
``x + gate(Linear([Dropout](act(Linear(norm(x))))))`` — precisely
body = [norm] → Linear(width, width·expansion) → activation → [Dropout] → Linear(width·expansion, width),
the pre-norm form of He et al. (2016), *Identity mappings in deep residual networks*, applied to
vectors. A dropped block passes its input through unchanged (Huang et al. 2016).

Dropout sites: site i < `blocks` inside block i (after its hidden activation); site `blocks`
before the head, so with dropout there the model ends ``nn.Dropout → nn.Linear`` as
`reglab.theory.dropout` requires.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

from reglab.config import ConfigError, DropBlockConfig, DropoutConfig, StochasticDepthConfig
from reglab.models.common import Size, ZooModel, dropout_layer, gates, linear_norm, scaled, seq, site_probabilities
from reglab.models.registry import register_model
from reglab.regularize.stochastic_depth import Residual

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class ResMLP(ZooModel):
    """stem → residual blocks → norm → activation → head."""


@register_model("resmlp", description="residual MLP (stochastic depth on vector data, e.g. MNIST-1D)",
                residual=True, dropout_sites="inside block i after its hidden activation; site `blocks`: "
                "before the head", default_norm="layer")
def build_resmlp(*, input_shape: tuple[int, ...], num_outputs: int, norm: str, dropout: DropoutConfig,
                 stochastic_depth: StochasticDepthConfig, dropblock: DropBlockConfig,
                 width: Size = 128, blocks: Size = 4, expansion: Size = 2,
                 activation: Literal["relu", "gelu", "tanh"] = "relu") -> ResMLP:
    if width <= 0 or blocks <= 0 or expansion <= 0:
        raise ConfigError(f"model.options: width, blocks and expansion must be positive "
                          f"(got width={width}, blocks={blocks}, expansion={expansion})")
    act, hidden = _ACTIVATIONS[activation], scaled(width, expansion, "expansion")
    probs = site_probabilities(dropout, blocks + 1)
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    layers.append(nn.Linear(math.prod(input_shape), width))  # (N, D) -> (N, width)
    for i, (gate, p) in enumerate(zip(gates(blocks, stochastic_depth), probs, strict=False)):
        body = nn.Sequential(*seq(linear_norm(norm, width), nn.Linear(width, hidden), act(),
                                  dropout_layer(p), nn.Linear(hidden, width)))
        layers.append(Residual(body, gate=gate, name=f"block{i}"))  # (N, width) -> (N, width)
    layers += seq(linear_norm(norm, width), act(), dropout_layer(probs[-1]), nn.Linear(width, num_outputs))
    return ResMLP(*layers)
