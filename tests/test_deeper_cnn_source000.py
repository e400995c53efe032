"""DeeperCNN as source 000 builds it: a plain CNN, and Conv1 replaced by the identity for stochastic depth."""

import pytest
import torch
from torch import nn

from reglab.config import ConfigError, ModelConfig, RegularizeConfig
from reglab.models.deeper_cnn import ReplaceSkip
from reglab.models.registry import build_model
from reglab.study import load_spec


def _build(options: dict, **regularize) -> nn.Module:
    cfg = ModelConfig(name="deeper_cnn", norm="batch", options=options)
    return build_model(cfg, input_shape=(28, 28), num_outputs=10, reg=RegularizeConfig(**regularize))


def _pointwise_convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]


def test_every_seed000_arm_is_a_plain_cnn_without_1x1_shortcuts(one_thread):
    spec = load_spec("seed000")
    assert spec.arm_config("Baseline", 0).data.name == "mnist"
    for arm in spec.arms:
        cfg = spec.arm_config(arm, 0)
        model = build_model(cfg.model, input_shape=(28, 28), num_outputs=10, reg=cfg.regularize)
        assert not _pointwise_convs(model), arm
        assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [64, 128, 256]
        assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
        assert model(torch.randn(2, 28, 28)).shape == (2, 10)
    sd = spec.arm_config("Stochastic depth conv1 p=0.2", 0)
    skips = [m for m in build_model(sd.model, input_shape=(28, 28), num_outputs=10,
                                    reg=sd.regularize).modules() if isinstance(m, ReplaceSkip)]
    assert len(skips) == 1 and skips[0].p == pytest.approx(0.8)


def test_replace_skip_trains_body_or_identity_and_tests_their_expectation(one_thread):
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    block = ReplaceSkip(body, p=0.7, mode="batch")
    x = torch.randn(5, 1, 6, 6)
    identity = torch.cat([x, torch.zeros(5, 3, 6, 6)], 1)
    with torch.no_grad():
        outs = [block(x) for _ in range(4000)]
        kept = [torch.allclose(o, body(x)) for o in outs]
        assert all(k or torch.equal(o, identity) for k, o in zip(kept, outs, strict=True))  # whole batch
        assert sum(kept) / len(kept) == pytest.approx(0.7, abs=0.03)
        block.eval()
        spread = 5 * (0.7 * 0.3 / len(outs)) ** 0.5 * (body(x) - identity).abs().max()  # 5 σ of the mean
        assert torch.allclose(block(x), torch.stack(outs).mean(0), atol=float(spread))  # E over the draws
        assert torch.allclose(block(x), 0.7 * body(x) + 0.3 * identity)


def test_replace_skip_needs_a_plain_network_and_test_time_scaling():
    sd = {"stochastic_depth": {"rate": 0.2, "rule": "constant", "blocks": [0], "scaling": "test"}}
    with pytest.raises(ConfigError, match="replace_skip needs model.options.residual = false"):
        _build({"replace_skip": True}, **sd)
    with pytest.raises(ConfigError, match="replace_skip needs"):
        _build({"residual": False, "replace_skip": True},
               stochastic_depth={**sd["stochastic_depth"], "scaling": "inverted"})
    with pytest.raises(ConfigError, match="no shortcut"):
        _build({"residual": False}, **sd)


def test_seed000_weight_decay_reaches_every_parameter_as_the_sources_optimizer_setting_does():
    """Source 000 sets weight_decay = 0.001 in the optimizer: torch then decays every parameter."""
    from reglab.regularize.optim import build_optimizer

    cfg = load_spec("seed000").arm_config("Weight decay 0.001", 0)
    model = build_model(cfg.model, input_shape=(28, 28), num_outputs=10, reg=cfg.regularize)
    decayed = [p for g in build_optimizer(model, cfg.optim, cfg.regularize).param_groups
               if g["weight_decay"] == 0.001 for p in g["params"]]
    assert len(decayed) == len(list(model.parameters()))  # BatchNorm's scales and shifts, biases too


def test_seed000_network_layer_by_layer_and_its_parameters_counted_by_hand():
    """Each block conv3×3 → BatchNorm → ReLU → 2×2 max-pool (source 000; the order and the bias-free
    convolutions before BatchNorm are reglab's choice where the source is silent), then FC 512 → 10."""
    model = _build({"residual": False})
    kinds = [type(m).__name__ for m in model.modules() if not isinstance(m, (nn.Sequential, type(model)))]
    block = ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert kinds == ["Unflatten", *block * 3, "Flatten", "Linear", "ReLU", "Linear"]
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    convs = 1 * 64 * 9 + 64 * 128 * 9 + 128 * 256 * 9
    norms = 2 * (64 + 128 + 256)
    heads = (256 * 3 * 3) * 512 + 512 + 512 * 10 + 10  # 28 → 14 → 7 → 3 after three poolings
    assert sum(p.numel() for p in model.parameters()) == convs + norms + heads
