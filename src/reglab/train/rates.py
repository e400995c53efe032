"""Per-run dropout and stochastic-depth rates of a pack.

Runs that differ only in their dropout (p, sites) or stochastic-depth settings (rate, rule, selected
blocks) train in one pack. The pack executes one *union* network: it has a dropout module at every
site where some run drops units and a gate at every block where some run skips blocks, and each of
those modules reads its rate from a buffer — a ``(K,)`` tensor over the pack, so under ``vmap``
every run sees its own rate. A run without dropout at a site gets rate 0 there (the mask is all
ones and the scale 1: exactly the identity); a run that never skips a block gets survival 1.

Which union module stands for which module of a run is decided by its *anchor*: its kind and the
number of parameters registered before it in module order. Dropout and gates carry no parameters,
so the anchor names the same place in the network whatever modules were left out. Runs with
stochastic depth must agree on its form (mode, scaling and the model's `depth_options`, e.g.
DeeperCNN's ``replace_skip``); runs without it join them (`pack_groups`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from torch import nn

from reglab.config import RunConfig
from reglab.models import build_model, get_model_info
from reglab.models.deeper_cnn import ReplaceSkip, replace_or_skip
from reglab.regularize.dropout import dropout_mask
from reglab.regularize.stochastic_depth import StochasticDepth, gate_branch

PER_RUN_OPTIONS = ("l1", "l2", "penalize", "ema", "label_smoothing", "input_noise", "mixup", "cutmix", "grad_clip",
                   "max_norm", "dropout", "early_stopping", "swa")
"""`regularize` fields that may differ inside a pack (besides `seed`, the whole `optim` section, the
stochastic-depth rate, rule and blocks, and the SAM radius)."""


def pack_key(cfg: RunConfig) -> str:
    """What runs sharing a pack must have in common: data, architecture, other model regularizers, budget,
    and whether they use SAM (its radius may differ; its second pass would double other runs' step)."""
    shared = cfg.to_dict()
    del shared["seed"], shared["optim"], shared["regularize"]["stochastic_depth"]
    shared["regularize"]["sam_rho"] = cfg.regularize.sam_rho > 0
    for name in PER_RUN_OPTIONS:
        del shared["regularize"][name]
    for name in get_model_info(cfg.model.name).depth_options:
        shared["model"]["options"].pop(name, None)
    return json.dumps(shared, sort_keys=True)


def depth_form(cfg: RunConfig) -> str | None:
    """How a run skips blocks (mode, scaling, the model's depth options); None without stochastic depth."""
    sd = cfg.regularize.stochastic_depth
    if sd.rate == 0:
        return None
    options = {name: cfg.model.options.get(name) for name in get_model_info(cfg.model.name).depth_options}
    return json.dumps({"mode": sd.mode, "scaling": sd.scaling, "options": options}, sort_keys=True)


def pack_groups(configs: Sequence[RunConfig]) -> list[list[int]]:
    """Indices of the configs that can share a pack, in first-seen order: equal `pack_key` and one
    stochastic-depth form (runs without stochastic depth join the largest form of their key)."""
    by_key: dict[str, dict[str | None, list[int]]] = {}
    for i, cfg in enumerate(configs):
        by_key.setdefault(pack_key(cfg), {}).setdefault(depth_form(cfg), []).append(i)
    groups = []
    for forms in by_key.values():
        plain = forms.pop(None, [])
        ranked = sorted(forms.values(), key=len, reverse=True)
        if ranked:
            ranked[0] = sorted(ranked[0] + plain)
        else:
            ranked = [plain]
        groups += ranked
    return sorted(groups, key=min)


def union_config(configs: Sequence[RunConfig]) -> RunConfig:
    """A config whose network has a dropout module and a gate wherever any of `configs` has one
    (its rates are placeholders: the pack sets each run's own)."""
    first = configs[0]
    dropping = [c.regularize.dropout for c in configs if c.regularize.dropout.p > 0]
    sites = None if any(d.layers is None for d in dropping) else sorted({i for d in dropping for i in d.layers})
    changes = {"regularize.dropout": {"p": 0.5 if dropping else 0.0, "layers": sites}}
    skipping = [c for c in configs if c.regularize.stochastic_depth.rate > 0]
    if skipping:
        form = skipping[0]
        depth = [c.regularize.stochastic_depth for c in skipping]
        blocks = None if any(d.blocks is None for d in depth) else sorted({b for d in depth for b in d.blocks})
        changes["regularize.stochastic_depth"] = form.regularize.stochastic_depth.model_dump() | {
            "rate": 0.5, "rule": "constant", "blocks": blocks}
        changes["model.options"] = form.model.options
    else:
        changes["regularize.stochastic_depth"] = {"rate": 0.0}
    return first.override(changes)


class RateDropout(nn.Module):
    """Inverted dropout whose drop probability is the buffer `rate` (one per run under vmap)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("rate", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * dropout_mask(x.shape, self.rate, x.dtype, x.device)  # rate 0: all kept, × 1


class RateGate(nn.Module):
    """`StochasticDepth` whose survival probability is the buffer `survival`."""

    def __init__(self, mode: str, scaling: str):
        super().__init__()
        self.mode, self.scaling = mode, scaling
        self.register_buffer("survival", torch.ones(()))

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        return gate_branch(branch, self.survival, mode=self.mode, scaling=self.scaling, training=self.training)


class RateReplaceSkip(nn.Module):
    """`ReplaceSkip` (source 000's replaced block) whose survival probability is the buffer `survival`."""

    def __init__(self, body: nn.Module, mode: str):
        super().__init__()
        self.register_buffer("survival", torch.ones(()))
        self.body, self.mode = body, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return replace_or_skip(self.body, x, self.survival, mode=self.mode, training=self.training)


def _rate_of(module: nn.Module) -> tuple[str, float] | None:
    """(kind, rate) of a dropout module or gate: ("dropout", p) or ("survival", p); None otherwise."""
    if isinstance(module, nn.Dropout):
        return "dropout", module.p
    if isinstance(module, StochasticDepth | ReplaceSkip):
        return "survival", module.p
    return None


def anchored_rates(model: nn.Module) -> dict[tuple[str, int], tuple[str, float]]:
    """Every dropout module and gate of `model` by anchor (kind, parameters before it): (name, rate)."""
    found, before = {}, 0
    for name, module in model.named_modules():
        if (rate := _rate_of(module)) is not None:
            anchor = (rate[0], before)
            if anchor in found:
                raise ValueError(f"packing: {name} and {found[anchor][0]} cannot be told apart")
            found[anchor] = (name, rate[1])
        before += len(list(module.parameters(recurse=False)))
    return found


def rate_network(configs: Sequence[RunConfig], models: Sequence[nn.Module], *, input_shape: tuple[int, ...],
                 num_outputs: int) -> tuple[nn.Module, dict[str, list[float]]]:
    """The union network (on the meta device: a pack supplies every tensor) and each rate buffer's
    value for every run, in the order of `models`."""
    cfg = union_config(configs)
    with torch.device("meta"):
        union = build_model(cfg.model, input_shape=input_shape, num_outputs=num_outputs, reg=cfg.regularize)
    sd = cfg.regularize.stochastic_depth
    buffers: dict[tuple[str, int], str] = {}
    for anchor, (name, _) in anchored_rates(union).items():
        old = union.get_submodule(name)
        if isinstance(old, nn.Dropout):
            new = RateDropout()
        elif isinstance(old, ReplaceSkip):
            new = RateReplaceSkip(old.body, old.mode)
        else:
            new = RateGate(sd.mode, sd.scaling)
        union.set_submodule(name, new.to("meta"))
        buffers[anchor] = f"{name}.{'rate' if anchor[0] == 'dropout' else 'survival'}"
    values = {buffer: [] for buffer in buffers.values()}
    for i, model in enumerate(models):
        own = anchored_rates(model)
        if extra := set(own) - set(buffers):
            raise ValueError(f"packing: run {i}'s {own[min(extra)][0]} has no place in the pack's network")
        for anchor, buffer in buffers.items():
            neutral = 0.0 if anchor[0] == "dropout" else 1.0
            values[buffer].append(own[anchor][1] if anchor in own else neutral)
    return union, values
