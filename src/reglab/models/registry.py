"""The model registry: `register_model`, `build_model`, `available_models`.

A builder is a function with the keyword arguments

    input_shape, num_outputs, norm, dropout, stochastic_depth, dropblock

(passed by `build_model`) plus its own options with defaults — the options a user sets in
``model.options`` (`reglab models` lists them). Options are checked against the builder's signature
and type annotations before it is called; every error is a one-line ConfigError naming the field.
"""

from __future__ import annotations

import inspect
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError
from torch import nn

from reglab.config import ConfigError, ModelConfig, RegularizeConfig

__all__ = ["ModelInfo", "available_models", "build_model", "get_model_info", "register_model"]

#: keyword arguments every builder receives from `build_model` (not user options)
RESERVED = ("input_shape", "num_outputs", "norm", "dropout", "stochastic_depth", "dropblock")
NORMS = ("none", "batch", "layer")


@dataclass(frozen=True)
class ModelInfo:
    """What `reglab models` shows about a registered model."""

    name: str
    description: str
    options: list[str]  # "name=default" per builder option
    residual: bool  # has residual blocks (stochastic depth applies)
    dropout_sites: str  # where the dropout sites are, in words
    norms: tuple[str, ...]
    default_norm: str
    dropblock: bool  # has conv feature maps (DropBlock applies)
    builder: Callable[..., nn.Module]
    depth_options: tuple[str, ...] = ()  # options that change the network only where stochastic depth acts


_REGISTRY: dict[str, ModelInfo] = {}
FINITE = ConfigDict(allow_inf_nan=False)


def _option_params(builder: Callable[..., nn.Module]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(builder).parameters
    missing = [r for r in RESERVED if r not in params]
    if missing:
        raise TypeError(f"model builder {builder.__name__} lacks the keyword arguments {missing}")
    return {k: p for k, p in params.items() if k not in RESERVED}


def register_model(name: str, *, description: str, residual: bool, dropout_sites: str,
                   norms: tuple[str, ...] = NORMS, default_norm: str = "batch", dropblock: bool = False,
                   depth_options: tuple[str, ...] = ()):
    """Decorator registering a model builder under `name` (re-registering warns and replaces).

    `depth_options`: builder options that change the network only in the blocks stochastic depth
    selects (with rate 0 every value builds the same network); packing relies on it."""
    if default_norm not in norms or not set(norms) <= set(NORMS):
        raise ValueError(f"model {name!r}: default_norm {default_norm!r} must be one of norms {norms}")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        options = [f"{k}={p.default!r}" if p.default is not inspect.Parameter.empty else k
                   for k, p in _option_params(builder).items()]
        if name in _REGISTRY:
            warnings.warn(f"model {name!r} registered again; the new builder replaces the old one",
                          stacklevel=2)
        _REGISTRY[name] = ModelInfo(name, description, options, residual, dropout_sites, tuple(norms),
                                    default_norm, dropblock, builder, tuple(depth_options))
        return builder

    return decorate


def available_models() -> list[ModelInfo]:
    """Every registered model, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"model.name: unknown model {name!r} (available: {', '.join(sorted(_REGISTRY))})") \
            from None


def _validated_options(info: ModelInfo, options: dict[str, Any]) -> dict[str, Any]:
    params = _option_params(info.builder)
    hints = typing.get_type_hints(info.builder, include_extras=True)  # with the bounds of `Annotated` sizes
    out = {}
    for key, value in options.items():
        if key not in params:
            raise ConfigError(f"model.options.{key}: unknown option for {info.name!r} "
                              f"(accepted: {', '.join(params) or 'none'})")
        if key in hints:
            try:  # no NaN or infinity: a scale or ratio of nan builds a network that diverges at once
                value = TypeAdapter(hints[key], config=FINITE).validate_python(value)
            except ValidationError as err:
                first = err.errors()[0]
                raise ConfigError(f"model.options.{key}: {first['msg']} (got {value!r})") from None
        out[key] = value
    return out


def build_model(cfg: ModelConfig, *, input_shape: tuple[int, ...], num_outputs: int,
                reg: RegularizeConfig) -> nn.Module:
    """Build the model `cfg.name` for per-sample `input_shape` and `num_outputs` outputs.

    The regularizers that live inside the network (dropout, stochastic depth, DropBlock) come from
    `reg`; their modules are inserted only where their probability is > 0, so with all of them off
    the result is the plain network.
    """
    info = get_model_info(cfg.name)
    norm = cfg.norm if cfg.norm is not None else info.default_norm
    if norm not in info.norms:
        raise ConfigError(f"model.norm: {norm!r} is not supported by {info.name!r} "
                          f"(supported: {', '.join(info.norms)})")
    sd = reg.stochastic_depth
    if sd.rate > 0 and not info.residual:
        raise ConfigError(f"regularize.stochastic_depth: model {info.name!r} has no residual blocks "
                          "(rate must be 0)")
    if reg.dropblock.p > 0 and not info.dropblock:
        raise ConfigError(f"regularize.dropblock: model {info.name!r} has no convolutional feature maps "
                          "(p must be 0)")
    options = _validated_options(info, cfg.options)
    model = info.builder(input_shape=tuple(input_shape), num_outputs=int(num_outputs), norm=norm,
                         dropout=reg.dropout, stochastic_depth=sd, dropblock=reg.dropblock, **options)
    if sd.rate > 0 and not getattr(model, "residual_blocks", list)():
        raise ConfigError(f"regularize.stochastic_depth: model {info.name!r} with these options has no "
                          "residual blocks (rate must be 0)")
    return model
