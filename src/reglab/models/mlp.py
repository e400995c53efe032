"""`mlp`: a fully connected network, the model of the dropout-theory experiments.

Rumelhart, Hinton & Williams (1986); dropout at the hidden layers as in Srivastava et al. (2014).
Layers: [Flatten] → (Linear → [norm] → activation → [Dropout]) per hidden width → Linear. It is a plain
``nn.Sequential``; with dropout at the last site it ends ``nn.Dropout → nn.Linear`` as
`reglab.theory.dropout` requires. Dropout site i sits after the activation of hidden layer i.

Initialisation (`init`):
  * ``"default"`` — PyTorch's (Kaiming-uniform weights, uniform biases), times `init_scale`;
  * ``"normal"`` — every weight *and* bias of a Linear with fan-in m_in is drawn from
    N(0, σ²), σ = init_scale · m_in^(−γ), γ = `init_gamma` (default 0.5, LeCun's variance 1/m_in).
    Larger γ = smaller initialisation. This is the small-initialisation family of the condensation
    / phase-diagram studies (Luo, Xu, Ma & Zhang 2021, *Phase diagram for two-layer ReLU neural
    networks at infinite-width limit*, JMLR; Zhang & Xu 2022, *Implicit regularization of
    dropout*): for a two-layer net of width m the output weights have σ = m^(−γ), so the product
    of the two layers' scales decays like m^(−γ): large γ moves towards the condensed regime,
    small γ towards the lazy/linear one (where the boundaries lie is the papers' subject). The bias
    belongs to a neuron's input weight (the papers' convention), so it is initialised like the weights.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from reglab.config import ConfigError, DropBlockConfig, DropoutConfig, StochasticDepthConfig
from reglab.models.common import Size, ZooModel, dropout_layer, linear_norm, seq, site_probabilities
from reglab.models.registry import register_model

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class MLP(ZooModel):
    """Plain nn.Sequential MLP (no residual blocks)."""


def init_linear(layer: nn.Linear, init: str, gamma: float, scale: float) -> None:
    """Re-initialise `layer` in place (see the module docstring)."""
    with torch.no_grad():
        if init == "normal":
            std = scale * layer.in_features ** (-gamma)
            layer.weight.normal_(0.0, std)
            if layer.bias is not None:
                layer.bias.normal_(0.0, std)
        elif scale != 1.0:
            layer.weight.mul_(scale)
            if layer.bias is not None:
                layer.bias.mul_(scale)


@register_model("mlp", description="fully connected network (dropout-theory experiments)", residual=False,
                dropout_sites="after each hidden activation (site i: hidden layer i)", default_norm="none")
def build_mlp(*, input_shape: tuple[int, ...], num_outputs: int, norm: str, dropout: DropoutConfig,
              stochastic_depth: StochasticDepthConfig, dropblock: DropBlockConfig,
              widths: tuple[Size, ...] = (1000,), activation: Literal["relu", "tanh"] = "relu",
              bias: bool = True, init: Literal["default", "normal"] = "default",
              init_gamma: float | None = None, init_scale: float = 1.0) -> MLP:
    if any(w <= 0 for w in widths):
        raise ConfigError(f"model.options.widths: widths must be positive (got {list(widths)})")
    if init_gamma is not None and init != "normal":
        raise ConfigError("model.options.init_gamma: only used with init = 'normal'")
    gamma = 0.5 if init_gamma is None else init_gamma
    probs = site_probabilities(dropout, len(widths))

    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []  # (N, D)
    d_in = math.prod(input_shape)
    for width, p in zip(widths, probs, strict=True):
        linear = nn.Linear(d_in, width, bias=bias)  # (N, d_in) -> (N, width)
        init_linear(linear, init, gamma, init_scale)
        layers += seq(linear, linear_norm(norm, width), _ACTIVATIONS[activation](), dropout_layer(p))
        d_in = width
    head = nn.Linear(d_in, num_outputs, bias=bias)  # (N, width) -> (N, num_outputs)
    init_linear(head, init, gamma, init_scale)
    return MLP(*layers, head)
