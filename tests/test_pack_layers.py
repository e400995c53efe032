"""Layers of a pack whose runs are channels: one call for all runs equals each run's own layer."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap
from torch.utils._python_dispatch import TorchDispatchMode

from reglab.config import RunConfig
from reglab.train.loop import Trainer
from reglab.train.pack_layers import (
    PackBatchNorm,
    PackMaxPool2d,
    pack_batch_norm,
    pack_layers,
    pack_max_pool2d,
)
from reglab.train.packed import PackedTrainer


@pytest.mark.parametrize("shape", [(6, 4), (6, 4, 5, 5)], ids=["1d", "2d"])
def test_one_call_for_all_runs_equals_each_runs_batch_norm(shape):
    """Outputs, gradients and running statistics, against vmap of F.batch_norm (torch's own rule)."""
    k, c = 3, shape[1]
    torch.manual_seed(0)
    x = torch.randn(k, *shape, requires_grad=True)
    weight, bias = torch.randn(k, c, requires_grad=True), torch.randn(k, c, requires_grad=True)
    stats = [torch.randn(k, c), torch.rand(k, c) + 0.5]
    reference_stats, initial = [s.clone() for s in stats], [s.clone() for s in stats]
    ours = vmap(lambda *a: pack_batch_norm(*a, 0.1, 1e-5))(x, weight, bias, *stats)
    theirs = vmap(lambda x, w, b, m, v: F.batch_norm(x, m, v, w, b, True, 0.1, 1e-5))(x, weight, bias,
                                                                                      *reference_stats)
    torch.testing.assert_close(ours, theirs)
    for s, r in zip(stats, reference_stats, strict=True):
        torch.testing.assert_close(s, r)
    assert not any(torch.equal(s, i) for s, i in zip(stats, initial, strict=True))  # updated in the rows
    probe = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * probe).sum(), [x, weight, bias])
    expected = torch.autograd.grad((theirs * probe).sum(), [x, weight, bias])
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


class BatchNormCalls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.weights: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.native_batch_norm, torch.ops.aten.native_batch_norm_backward):
            self.weights.append(args[1] if func.overloadpacket is torch.ops.aten.native_batch_norm else args[2])
        return func(*args, **(kwargs or {}))


def test_a_packed_step_normalises_each_layer_with_one_affine_kernel():
    """Per BatchNorm layer one forward and one backward call for all K runs, with the runs' weights
    inside the kernel (vmap's own rule calls it without them and adds multiply and add kernels)."""
    cfg = RunConfig.from_dict({
        "data": {"name": "mnist1d", "train_subset": 128, "test_subset": 64},
        "model": {"name": "mlp", "norm": "batch", "options": {"widths": [32, 16]}},
        "train": {"epochs": 1, "batch_size": 32, "device": "cpu", "eval_train_samples": 0}})
    k = 4
    pack = PackedTrainer([Trainer(cfg.override({"seed": seed})) for seed in range(k)])
    layers = [m for m in pack.module.modules() if isinstance(m, PackBatchNorm)]
    assert len(layers) == 2
    pack.module.train()
    pack.optimizer.set_lr_table(pack._lr_table(4))
    with BatchNormCalls() as calls:
        pack._step(torch.randint(0, 128, (k, 32)))
    assert len(calls.weights) == 2 * len(layers)
    assert all(w is not None for w in calls.weights)
    assert sorted(w.shape for w in calls.weights) == [(k * 16,)] * 2 + [(k * 32,)] * 2  # the K runs' weights


@pytest.mark.parametrize("options", [(2, 2, 0, 1, False), (3, 2, 1, 1, True), (2, 1, 0, 2, False)],
                         ids=["2x2", "3x3-stride2-pad1-ceil", "dilated"])
def test_one_max_pool_for_all_runs_equals_each_runs_pool(options):
    kernel, stride, padding, dilation, ceil_mode = options
    args = ([kernel] * 2, [stride] * 2, [padding] * 2, [dilation] * 2, ceil_mode)
    torch.manual_seed(0)
    conv_output = torch.randn(6, 3 * 4, 9, 9).view(6, 3, 4, 9, 9)  # (B, K, C, H, W): the runs are dim 1
    x = conv_output.detach().requires_grad_()
    ours = vmap(lambda x: pack_max_pool2d(x, *args), in_dims=1)(x)
    theirs = vmap(lambda x: F.max_pool2d(x, *args), in_dims=1)(x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    probe = torch.randn_like(ours)
    ours_grad, = torch.autograd.grad((ours * probe).sum(), x)
    theirs_grad, = torch.autograd.grad((theirs * probe).sum(), x)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=0, atol=0)


@pytest.mark.parametrize("op, args", [
    (pack_batch_norm, lambda: (torch.randn(4, 3, 5, 5), torch.randn(3), torch.randn(3), torch.zeros(3), torch.ones(3),
                               0.1, 1e-5)),
    (pack_max_pool2d, lambda: (torch.randn(4, 3, 9, 9), [3, 3], [2, 2], [1, 1], [1, 1], True)),
], ids=["batch_norm", "max_pool2d"])
def test_the_ops_declare_their_schema_and_shapes(op, args):
    """torch.library's own checks: the declared mutations and the fake (shape) implementations."""
    torch.library.opcheck(op, args(), test_utils=("test_schema", "test_faketensor"))


def test_pack_layers_keep_the_network_and_its_parameter_order():
    cfg = RunConfig.from_dict({"data": {"name": "mnist1d", "train_subset": 64, "test_subset": 64},
                               "model": {"name": "mlp", "norm": "batch", "options": {"widths": [32, 16]}},
                               "train": {"device": "cpu"}})
    model = Trainer(cfg).model
    model.get_submodule("1").momentum = None  # a cumulative average: torch's own layer, in float32 under bf16
    model.eval()
    x = torch.randn(5, 40)
    before, shapes = model(x), [p.shape for p in model.parameters()]
    pack_layers(model, float32_norms=True)
    assert [type(m).__name__ for m in model.children()][1:5] == ["Float32Norm", "ReLU", "Linear", "PackBatchNorm"]
    assert [p.shape for p in model.parameters()] == shapes
    torch.testing.assert_close(model(x), before)  # evaluation: each layer itself
    norm = model.get_submodule("1")
    h = torch.randn(4, 32).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(h)
    assert out.dtype == torch.bfloat16  # normalised in float32, handed on in bf16
    torch.testing.assert_close(out, norm.norm(h.detach().float()).bfloat16(), rtol=0, atol=0)
    out.float().sum().backward()
    assert h.grad is not None and h.grad.dtype == torch.bfloat16


def test_one_batch_norm_call_takes_bf16_activations_with_float32_statistics():
    """As a solo BatchNorm under bf16 autocast: bf16 in and out, float32 weights and running statistics."""
    k, shape = 3, (8, 4, 5, 5)
    torch.manual_seed(0)
    x = torch.randn(k, *shape)
    weight, bias = torch.randn(k, 4, requires_grad=True), torch.randn(k, 4, requires_grad=True)
    stats, exact = [torch.zeros(k, 4), torch.ones(k, 4)], [torch.zeros(k, 4), torch.ones(k, 4)]
    low = x.bfloat16().requires_grad_()
    out = vmap(lambda *a: pack_batch_norm(*a, 0.1, 1e-5))(low, weight, bias, *stats)
    reference = vmap(lambda x, w, b, m, v: F.batch_norm(x, m, v, w, b, True, 0.1, 1e-5))(
        low.detach().float(), weight, bias, *exact)
    assert out.dtype == torch.bfloat16 and stats[0].dtype == torch.float32
    torch.testing.assert_close(out.float(), reference, rtol=2e-2, atol=2e-2)
    for s, e in zip(stats, exact, strict=True):
        torch.testing.assert_close(s, e, rtol=1e-2, atol=1e-2)
    grads = torch.autograd.grad(out.float().pow(2).sum(), [low, weight, bias])
    assert grads[0].dtype == torch.bfloat16 and all(g.isfinite().all() for g in grads)


class Copies(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.clone, torch.ops.aten.copy_, torch.ops.aten._to_copy):
            self.shapes.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


def test_a_packed_conv_net_step_copies_no_activation_between_its_convolutions():
    """Convolution → BatchNorm → ReLU → max-pool → convolution keeps the runs as channels: with torch's
    own rules the pool copies its input to (K·B, C, H, W) and the next convolution copies it back."""
    cfg = RunConfig.from_dict({
        "data": {"name": "mnist-5k", "train_subset": 64, "test_subset": 32},
        "model": {"name": "deeper_cnn", "norm": "batch", "options": {"channels": [4, 8, 8], "fc_widths": [16],
                                                                      "residual": False}},
        "train": {"epochs": 1, "batch_size": 16, "device": "cpu", "eval_train_samples": 0}})
    k = 3
    pack = PackedTrainer([Trainer(cfg.override({"seed": seed})) for seed in range(k)])
    assert sum(isinstance(m, PackMaxPool2d) for m in pack.module.modules()) == 3
    pack.module.train()
    pack.optimizer.set_lr_table(pack._lr_table(4))
    pack._step(torch.randint(0, 64, (k, 16)))
    with Copies() as copies:
        pack._step(torch.randint(0, 64, (k, 16)))
    conv_outputs = {(28, 28), (14, 14), (7, 7)}
    assert not [s for s in copies.shapes if s[-2:] in conv_outputs], copies.shapes
