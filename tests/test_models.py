"""The model zoo: shapes, registry validation, regularizer placement, published parameter counts, vmap."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from reglab.config import ConfigError, ModelConfig, RegularizeConfig
from reglab.models import available_models, build_model, register_model
from reglab.models import registry as registry_module
from reglab.regularize.dropblock import DropBlock2d
from reglab.regularize.stochastic_depth import Residual, StochasticDepth

# tiny configurations: (name, per-sample input shape, options)
TINY = {
    "mlp": ((12,), {"widths": [16, 8]}),
    "resmlp": ((12,), {"width": 8, "blocks": 3}),
    "deeper_cnn": ((1, 12, 12), {"channels": [4, 8, 8], "fc_widths": [16]}),
    "resnet20": ((3, 8, 8), {"width": 0.25}),
    "resnet18": ((3, 8, 8), {"width": 0.0625}),
    "vgg9": ((3, 8, 8), {"width": 0.125}),
    "transformer": ((10,), {"depth": 2, "d_model": 8, "heads": 2, "mlp_ratio": 2.0}),
}
RESIDUAL_BLOCKS = {"mlp": 0, "resmlp": 3, "deeper_cnn": 3, "resnet20": 9, "resnet18": 8, "vgg9": 0, "transformer": 4}


def reg(**sections) -> RegularizeConfig:
    return RegularizeConfig.model_validate(sections)


def build(name: str, *, shape=None, options=None, norm=None, outputs: int = 3, **sections) -> nn.Module:
    tiny_shape, tiny_options = TINY.get(name, ((4,), {}))
    cfg = ModelConfig(name=name, norm=norm, options=tiny_options if options is None else options)
    return build_model(cfg, input_shape=tiny_shape if shape is None else shape, num_outputs=outputs,
                       reg=reg(**sections))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


# ---------------------------------------------------------------------------------------------- shapes
def test_every_model_is_registered_with_options():
    infos = {m.name: m for m in available_models()}
    assert set(TINY) <= set(infos)
    assert "widths=(1000,)" in infos["mlp"].options and "pre_ln=True" in infos["transformer"].options
    assert all(m.description and m.dropout_sites for m in infos.values())


@pytest.mark.parametrize("name", sorted(TINY))
def test_output_shape_and_residual_blocks(name):
    torch.manual_seed(0)
    model = build(name)
    x = torch.randn(2, *TINY[name][0])
    assert model(x).shape == (2, 3)
    assert model.eval()(x).shape == (2, 3)
    blocks = model.residual_blocks()
    assert len(blocks) == RESIDUAL_BLOCKS[name] and all(isinstance(b, Residual) for b in blocks)


@pytest.mark.parametrize(("name", "shape", "options"), [
    ("mlp", (1, 6, 6), {"widths": [8]}),  # images are flattened
    ("mlp", (5,), {"widths": []}),  # a linear model
    ("deeper_cnn", (1, 28, 28), None),  # default 64/128/256, 28×28 grayscale
    ("deeper_cnn", (3, 32, 32), {"channels": [4, 8, 8], "fc_widths": [8, 8]}),  # 32×32 RGB
    ("deeper_cnn", (16, 16), {"channels": [4, 4], "fc_widths": []}),  # (H, W): one channel
    ("resnet20", (1, 10, 10), {"width": 0.25}),
    ("vgg9", (3, 32, 32), {"width": 0.125}),
    ("transformer", (7, 3), {"depth": 1, "d_model": 8, "heads": 4, "pre_ln": False}),  # (L, F) input
])
def test_other_inputs(name, shape, options):
    torch.manual_seed(0)
    model = build(name, shape=shape, options=options, outputs=5)
    assert model(torch.randn(3, *shape)).shape == (3, 5)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_supported_norm(name):
    info = next(m for m in available_models() if m.name == name)
    for norm in info.norms:
        model = build(name, norm=norm)
        assert model(torch.randn(2, *TINY[name][0])).shape == (2, 3)
    if name != "transformer":
        kinds = {type(m) for m in build(name, norm="layer").modules()}
        assert kinds & {nn.LayerNorm, nn.GroupNorm} and not kinds & {nn.BatchNorm1d, nn.BatchNorm2d}
        assert not {type(m) for m in build(name, norm="none").modules()} & {nn.BatchNorm1d, nn.BatchNorm2d,
                                                                           nn.LayerNorm, nn.GroupNorm}


def test_regression_outputs():
    model = build("mlp", outputs=2)
    assert model(torch.randn(4, 12)).shape == (4, 2)


# --------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("name", "norm", "options", "sections", "field"), [
    ("nope", None, {}, {}, "model.name: unknown model 'nope'"),
    ("mlp", None, {"depth": 3}, {}, "model.options.depth: unknown option for 'mlp'"),
    ("mlp", None, {"activation": "gelu"}, {}, "model.options.activation"),
    ("mlp", None, {"init_gamma": 1.0}, {}, "model.options.init_gamma"),  # needs init='normal'
    ("transformer", "batch", None, {}, "model.norm"),
    ("transformer", None, {"d_model": 10, "heads": 3}, {}, "model.options.heads"),
    ("mlp", None, None, {"stochastic_depth": {"rate": 0.2}}, "regularize.stochastic_depth: model 'mlp'"),
    ("vgg9", None, None, {"stochastic_depth": {"rate": 0.2}}, "regularize.stochastic_depth: model 'vgg9'"),
    ("deeper_cnn", None, {"residual": False, "channels": [4, 8, 8]}, {"stochastic_depth": {"rate": 0.2}},
     "regularize.stochastic_depth: block conv1 changes shape (1, 12, 12) -> (4, 12, 12) and has no shortcut"),
    ("resnet20", None, None, {"stochastic_depth": {"rate": 0.2, "blocks": [9]}},
     "regularize.stochastic_depth.blocks"),
    ("mlp", None, None, {"dropout": {"p": 0.2, "layers": [2]}}, "regularize.dropout.layers"),
    ("resnet20", None, None, {"dropout": {"p": 0.2, "layers": [-1]}}, "regularize.dropout.layers"),
    ("mlp", None, {"widths": []}, {"dropout": {"p": 0.2}}, "regularize.dropout"),
    ("mlp", None, None, {"dropblock": {"p": 0.1}}, "regularize.dropblock"),
    ("transformer", None, None, {"dropblock": {"p": 0.1}}, "regularize.dropblock"),
])
def test_build_errors_name_the_field(name, norm, options, sections, field):
    with pytest.raises(ConfigError) as err:
        build(name, norm=norm, options=options, **sections)
    message = str(err.value)
    assert message.startswith(field.split(":")[0]) and field in message and "\n" not in message


def test_image_model_refuses_vector_input():
    with pytest.raises(ConfigError, match="^model.name: 'resnet20' needs image input"):
        build("resnet20", shape=(40,))


def test_option_values_are_validated_and_coerced():
    model = build("mlp", options={"widths": [5, 7]})  # a TOML list becomes the tuple the builder expects
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [5, 7, 3]


def test_register_model_warns_on_overwrite():
    def builder(*, input_shape, num_outputs, norm, dropout, stochastic_depth, dropblock, k: int = 2):
        return nn.Linear(input_shape[0], num_outputs * k)

    try:
        register_model("tmp_test_model", description="t", residual=False, dropout_sites="none")(builder)
        with pytest.warns(UserWarning, match="registered again"):
            register_model("tmp_test_model", description="t", residual=False, dropout_sites="none")(builder)
        info = next(m for m in available_models() if m.name == "tmp_test_model")
        assert info.options == ["k=2"] and info.default_norm == "batch"
    finally:
        registry_module._REGISTRY.pop("tmp_test_model", None)


# ------------------------------------------------------------------------------ regularizer placement
@pytest.mark.parametrize("name", sorted(TINY))
def test_zero_probability_gives_the_plain_network(name):
    model = build(name)
    assert count(model, nn.Dropout) == count(model, StochasticDepth) == count(model, DropBlock2d) == 0
    assert all(b.gate is None for b in model.residual_blocks())


def test_mlp_ends_with_dropout_then_linear():
    model = build("mlp", dropout={"p": 0.3})
    assert isinstance(model, nn.Sequential)  # a plain Sequential, as reglab.theory needs
    assert isinstance(model[-2], nn.Dropout) and model[-2].p == 0.3 and isinstance(model[-1], nn.Linear)
    assert count(model, nn.Dropout) == 2  # one per hidden layer
    only_first = build("mlp", dropout={"p": 0.3, "layers": [0]})
    assert count(only_first, nn.Dropout) == 1 and isinstance(only_first[-1], nn.Linear)
    assert not isinstance(only_first[-2], nn.Dropout)


def test_mlp_structure_serves_the_dropout_theory():
    from reglab.theory.dropout import dropout_r1

    torch.manual_seed(0)
    model = build("mlp", shape=(1, 3, 4), options={"widths": [6]}, dropout={"p": 0.5})
    assert torch.isfinite(dropout_r1(model, torch.randn(8, 1, 3, 4)))


def test_mlp_normal_init_std_is_fan_in_to_minus_gamma():
    torch.manual_seed(0)
    model = build("mlp", shape=(400,), options={"widths": [300], "init": "normal", "init_gamma": 1.0,
                                                "init_scale": 2.0})
    hidden, head = model[0], model[-1]
    assert hidden.weight.std().item() == pytest.approx(2.0 / 400, rel=0.02)
    assert head.weight.std().item() == pytest.approx(2.0 / 300, rel=0.1)
    assert hidden.bias.std().item() == pytest.approx(2.0 / 400, rel=0.15)  # bias drawn like the weights


def test_mlp_init_scale_multiplies_the_default_init():
    torch.manual_seed(7)
    base = build("mlp")
    torch.manual_seed(7)
    scaled = build("mlp", options={**TINY["mlp"][1], "init_scale": 0.1})
    for a, b in zip(base.parameters(), scaled.parameters(), strict=True):
        assert torch.allclose(b, 0.1 * a)


def test_dropout_sites_of_the_conv_nets_and_transformer():
    assert count(build("resnet20", dropout={"p": 0.5}), nn.Dropout) == 9  # after every block
    assert count(build("resnet20", dropout={"p": 0.5, "layers": [0, 8]}), nn.Dropout) == 2
    assert count(build("vgg9", dropout={"p": 0.5}), nn.Dropout) == 2  # between the FC layers
    assert count(build("deeper_cnn", dropout={"p": 0.5}), nn.Dropout) == 1
    assert count(build("transformer", dropout={"p": 0.1}), nn.Dropout) == 4  # attn + MLP output per layer
    assert count(build("deeper_cnn", dropblock={"p": 0.1}), DropBlock2d) == 3
    assert count(build("resnet20", dropblock={"p": 0.1}), DropBlock2d) == 6  # last two stages


def test_stochastic_depth_linear_rule_over_all_blocks_in_order():
    model = build("resnet20", stochastic_depth={"rate": 0.5})
    probs = [b.gate.p for b in model.residual_blocks()]
    assert probs == pytest.approx([1 - (l / 9) * 0.5 for l in range(1, 10)])
    tr = build("transformer", stochastic_depth={"rate": 0.2, "mode": "batch", "scaling": "test"})
    names = [b.name for b in tr.residual_blocks()]
    assert names == ["layer0.attn", "layer0.mlp", "layer1.attn", "layer1.mlp"]
    assert all(b.gate.mode == "batch" and b.gate.scaling == "test" for b in tr.residual_blocks())


def test_deeper_cnn_first_block_is_droppable_through_its_projection():
    torch.manual_seed(0)
    model = build("deeper_cnn", stochastic_depth={"rate": 0.5, "blocks": [0]})
    conv1, conv2, _ = model.residual_blocks()
    assert conv1.name == "conv1" and conv1.gate.p == 0.5 and conv2.gate is None
    x = torch.randn(64, 1, 12, 12)
    with torch.no_grad():
        out = conv1.train()(x)
        skip, branch = conv1.shortcut(x), conv1.body(x)
    dropped = torch.isclose(out, skip, atol=1e-6).flatten(1).all(1)
    kept = torch.isclose(out, skip + branch / 0.5, atol=1e-5).flatten(1).all(1)
    assert (dropped ^ kept).all() and dropped.any() and kept.any()


def test_drop_frequency_of_each_block_in_a_network():
    torch.manual_seed(0)
    model = build("resnet20", stochastic_depth={"rate": 0.6}).train()
    zeros: dict[int, list[torch.Tensor]] = {}
    for i, block in enumerate(model.residual_blocks()):
        block.gate.register_forward_hook(lambda m, inp, out, i=i: zeros.setdefault(i, []).append(
            (out.flatten(1) == 0).all(1)))
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(400, 3, 8, 8))
    n = 1200
    for i, block in enumerate(model.residual_blocks()):
        p = block.gate.p
        dropped = torch.cat(zeros[i]).float().mean().item()
        assert abs(dropped - (1 - p)) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3, (i, p, dropped)


# -------------------------------------------------------------------------------------- param counts
def test_resnet20_parameter_count_matches_the_paper():
    n = n_params(build("resnet20", shape=(3, 32, 32), options={}, outputs=10))
    assert n == pytest.approx(0.27e6, rel=0.02)  # He et al. 2016, Table 6: 0.27M


def test_resnet18_parameter_count_matches_the_published_number():
    n = n_params(build("resnet18", shape=(3, 32, 32), options={}, outputs=10))
    assert n == pytest.approx(11.2e6, rel=0.02)  # CIFAR ResNet-18: 11.17M


def test_width_multiplier_scales_the_parameter_count():
    narrow = n_params(build("resnet20", shape=(3, 32, 32), options={"width": 0.5}, outputs=10))
    assert narrow == pytest.approx(0.27e6 / 4, rel=0.05)  # conv weights ∝ width²


# ------------------------------------------------------------------------------------------------ vmap
@pytest.mark.parametrize("name", sorted(TINY))
def test_models_run_under_vmap_with_different_masks(name):
    torch.manual_seed(0)
    sections = {"dropout": {"p": 0.3}}
    if RESIDUAL_BLOCKS[name]:
        sections["stochastic_depth"] = {"rate": 0.5}
    if name not in ("mlp", "resmlp", "transformer"):
        sections["dropblock"] = {"p": 0.1}
    model = build(name, **sections).train()  # BatchNorm included: its buffers are stacked too
    params, buffers = stack_module_state([copy.deepcopy(model) for _ in range(3)])

    def run(p, b, x):
        return functional_call(model, (p, b), (x,))

    x = torch.randn(4, *TINY[name][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = vmap(run, in_dims=(0, 0, None), randomness="different")(params, buffers, x)
    assert y.shape == (3, 4, 3) and torch.isfinite(y).all()
    assert not torch.allclose(y[0], y[1]) and not torch.allclose(y[1], y[2])  # same weights, own masks


def test_resmlp_computes_its_documented_formula():
    """In eval mode: h = stem(x); per block h ← h + W₂·relu(W₁·LN(h) + b₁) + b₂; out = head(relu(LN(h))),
    written out with `torch.nn.functional` on the model's own weights (width 8, 2 blocks, expansion 2)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="resmlp", norm="layer", options={"width": 8, "blocks": 2, "expansion": 2}),
                        input_shape=(40,), num_outputs=10, reg=RegularizeConfig(dropout={"p": 0.1})).eval()
    stem, block0, block1, norm, _, _, head = model
    x = torch.randn(5, 40)
    h = F.linear(x, stem.weight, stem.bias)
    for block in (block0, block1):
        ln, up, _, _, down = block.body
        inner = F.relu(F.linear(F.layer_norm(h, (8,), ln.weight, ln.bias), up.weight, up.bias))
        h = h + F.linear(inner, down.weight, down.bias)
    expected = F.linear(F.relu(F.layer_norm(h, (8,), norm.weight, norm.bias)), head.weight, head.bias)
    torch.testing.assert_close(model(x), expected)
    assert sum(p.numel() for p in model.parameters()) == (40 * 8 + 8) + 2 * (2 * 8 + 8 * 16 + 16 + 16 * 8 + 8) + (
        2 * 8 + 8 * 10 + 10)
