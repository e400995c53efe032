"""BatchNorm in a pack: one batch-norm call for all runs equals each run's own batch norm."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap
from torch.utils._python_dispatch import TorchDispatchMode

from reglab.config import RunConfig
from reglab.train.loop import Trainer
from reglab.train.pack_norm import Float32Norm, PackBatchNorm, pack_batch_norm, pack_batch_norms
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


def test_pack_batch_norms_keep_the_network_its_parameter_order_and_float32_statistics():
    cfg = RunConfig.from_dict({"data": {"name": "mnist1d", "train_subset": 64, "test_subset": 64},
                               "model": {"name": "mlp", "norm": "batch", "options": {"widths": [32, 16]}},
                               "train": {"device": "cpu"}})
    model = Trainer(cfg).model.eval()
    x = torch.randn(5, 40)
    before, shapes = model(x), [p.shape for p in model.parameters()]
    pack_batch_norms(model, float32=True)
    norms = [m for m in model.modules() if isinstance(m, Float32Norm)]
    assert len(norms) == 2 and all(isinstance(m.norm, PackBatchNorm) for m in norms)
    assert [p.shape for p in model.parameters()] == shapes
    torch.testing.assert_close(model(x), before)  # evaluation: each layer itself
    inputs = [torch.randn(4, m.norm.norm.num_features).bfloat16().requires_grad_() for m in norms]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = [m(h) for m, h in zip(norms, inputs, strict=True)]
    for m, h, out in zip(norms, inputs, inside, strict=True):  # normalised in float32, handed on in bf16
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out, m.norm(h.detach().float()).bfloat16(), rtol=0, atol=0)
        out.float().sum().backward()
        assert h.grad is not None and h.grad.dtype == torch.bfloat16
