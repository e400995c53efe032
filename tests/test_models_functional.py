"""The conv nets and the Transformer compute their documented formulas (eval mode), recomputed with
`torch.nn.functional` on the models' own weights; channel counts of the width option and the MLP's
bias and default-initialisation options worked by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reglab.config import ModelConfig, RegularizeConfig
from reglab.models import build_model
from reglab.models.common import conv_norm


def build(name: str, shape, options, norm=None, outputs: int = 3) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, norm=norm, options=options), input_shape=shape,
                        num_outputs=outputs, reg=RegularizeConfig())
    for m in model.modules():  # non-trivial BatchNorm statistics and affine maps
        if isinstance(m, nn.BatchNorm2d | nn.LayerNorm | nn.GroupNorm):
            nn.init.normal_(m.weight, 1.0, 0.2)
            nn.init.normal_(m.bias, 0.0, 0.2)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def bn(x, m):
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)


def test_resnet20_computes_basic_blocks_with_the_papers_strides():
    """stem conv→BN→ReLU; block: ReLU(shortcut(x) + BN(conv(ReLU(BN(conv_s(x)))))), stride 2 at the first
    block of stages 2 and 3, 1×1 conv→BN projection where the shape changes; pool, FC."""
    model = build("resnet20", (3, 8, 8), {"width": 0.25})
    x = torch.randn(2, 3, 8, 8)
    conv, norm, _ = model.stem
    h = F.relu(bn(F.conv2d(x, conv.weight, padding=1), norm))
    sizes = []
    for s, stage in enumerate((model.layer1, model.layer2, model.layer3), start=1):
        for b, block in enumerate(stage, start=1):
            stride = 2 if s > 1 and b == 1 else 1
            c1, n1, _, c2, n2 = block.body
            branch = bn(F.conv2d(F.relu(bn(F.conv2d(h, c1.weight, stride=stride, padding=1), n1)), c2.weight,
                                 padding=1), n2)
            skip = h if block.shortcut is None else bn(F.conv2d(h, block.shortcut[0].weight, stride=stride),
                                                       block.shortcut[1])
            h = F.relu(skip + branch)
        sizes.append(tuple(h.shape[1:]))
    assert sizes == [(4, 8, 8), (8, 4, 4), (16, 2, 2)]  # 16/32/64 channels × 0.25
    expected = F.linear(h.mean((2, 3)), model.fc.weight, model.fc.bias)
    torch.testing.assert_close(model(x), expected)


def test_the_width_option_scales_every_channel_count_rounded():
    model = build("resnet20", (3, 8, 8), {"width": 0.3})
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    # 16·0.3 = 4.8 → 5, 32·0.3 = 9.6 → 10, 64·0.3 = 19.2 → 19: stem, then 6 convs per stage
    assert convs == [5] + [5] * 6 + [10] * 6 + [19] * 6


def test_vgg9_computes_its_layer_list():
    model = build("vgg9", (3, 8, 8), {"width": 0.125})
    x = torch.randn(2, 3, 8, 8)
    h = x
    for k in range(1, 7):
        conv, norm, _ = getattr(model, f"conv{k}")
        h = F.relu(bn(F.conv2d(h, conv.weight, padding=1), norm))
        if k % 2 == 0:
            h = F.max_pool2d(h, 2)
    h = h.flatten(1)
    for fc in (model.fc1, model.fc2):
        h = F.relu(F.linear(h, fc.weight, fc.bias))
    torch.testing.assert_close(model(x), F.linear(h, model.classifier.weight, model.classifier.bias))


def attention(x, sa, heads):
    n, length, d = x.shape
    q, k, v = F.linear(x, sa.qkv.weight, sa.qkv.bias).split(d, dim=-1)
    q, k, v = (t.reshape(n, length, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // heads), dim=-1)
    return F.linear((att @ v).transpose(1, 2).reshape(n, length, d), sa.out.weight, sa.out.bias)


@pytest.mark.parametrize("pre_ln", [True, False])
def test_transformer_computes_its_documented_formula(pre_ln):
    d, heads = 8, 2
    model = build("transformer", (10,), {"depth": 2, "d_model": d, "heads": heads, "mlp_ratio": 2.0,
                                         "pre_ln": pre_ln})
    x = torch.randn(3, 10)
    h = F.linear(x.unsqueeze(-1), model.embed.weight, model.embed.bias) + model.pos.pos
    for i in range(2):
        for kind in ("attn", "mlp"):
            block = getattr(model, f"layer{i}_{kind}")
            if pre_ln:
                ln, f = block.body[0], block.body[1]
            else:
                ln, f = block.post, block.body[0]

            def sub(t, f=f, kind=kind):
                if kind == "attn":
                    return attention(t, f, heads)
                return F.linear(F.gelu(F.linear(t, f[0].weight, f[0].bias)), f[2].weight, f[2].bias)

            norm = lambda t, ln=ln: F.layer_norm(t, (d,), ln.weight, ln.bias)  # noqa: E731
            h = h + sub(norm(h)) if pre_ln else norm(h + sub(h))
    if pre_ln:
        h = F.layer_norm(h, (d,), model.norm.weight, model.norm.bias)
    expected = F.linear(h.mean(1), model.head.weight, model.head.bias)
    torch.testing.assert_close(model(x), expected)


def test_layer_norm_of_a_conv_map_normalises_each_sample_over_channels_and_positions():
    torch.manual_seed(0)
    norm = conv_norm("layer", 4)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(3, 4, 5, 5) * torch.arange(1.0, 5.0).view(1, 4, 1, 1)  # channels of other scales
    expected = F.layer_norm(x, (4, 5, 5)) * norm.weight.view(1, 4, 1, 1) + norm.bias.view(1, 4, 1, 1)
    torch.testing.assert_close(norm(x), expected)


def test_mlp_without_bias_has_weight_matrices_only():
    model = build("mlp", (12,), {"widths": [16, 8], "bias": False})
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Linear))
    assert sum(p.numel() for p in model.parameters()) == 12 * 16 + 16 * 8 + 8 * 3


def test_mlp_normal_init_defaults_to_lecun_variance():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="mlp", options={"widths": [300], "init": "normal"}), input_shape=(400,),
                        num_outputs=3, reg=RegularizeConfig())
    assert model[0].weight.std().item() == pytest.approx(400 ** -0.5, rel=0.02)  # γ = 0.5: σ² = 1/fan-in
