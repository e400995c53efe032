"""The CUDA speed options (bf16 autocast, torch.compile, channels-last) fall back on CPU: a CPU run with
them set trains exactly as one without. The fused optimizers are used on every device and update as
torch.optim's reference (for-loop) implementations do."""

import pytest
import torch

from reglab.config import OptimConfig, RegularizeConfig, RunConfig
from reglab.data import TensorData
from reglab.regularize.optim import build_optimizer
from reglab.train.loop import Trainer


def images() -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 12, 12, generator=g)
    y = torch.randint(0, 3, (96,), generator=g)
    return TensorData("images", x[:64], y[:64], x[64:], y[64:], num_classes=3)


def test_cuda_speed_options_change_nothing_on_cpu():
    cfg = RunConfig.from_dict({
        "model": {"name": "deeper_cnn", "norm": "batch", "options": {"channels": [4, 8, 8], "fc_widths": [16]}},
        "optim": {"name": "adamw", "weight_decay": 0.01},
        "train": {"epochs": 2, "batch_size": 16, "device": "cpu", "eval_train_samples": 32},
    })
    fast = cfg.override({"train.amp": True, "train.compile": True, "train.channels_last": True})
    plain_trainer, fast_trainer = Trainer(cfg, data=images()), Trainer(fast, data=images())
    assert fast_trainer.forward is fast_trainer.model  # not compiled off CUDA
    assert fast_trainer.optimizer.defaults["fused"]  # fused kernels on CPU too
    plain, quick = plain_trainer.fit(), fast_trainer.fit()
    for a, b in zip(plain.epochs, quick.epochs, strict=True):
        assert {k: v for k, v in a.items() if not k.endswith("seconds")} == \
            {k: v for k, v in b.items() if not k.endswith("seconds")}
    for a, b in zip(plain_trainer.model.state_dict().values(), fast_trainer.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_fused_optimizer_matches_the_for_loop_reference(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    optim = OptimConfig(name=name, lr=0.05, weight_decay=0.01)
    fused = build_optimizer(model, optim, RegularizeConfig())
    assert fused.defaults["fused"]
    twin = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    groups = [dict(g, params=[twin[[id(q) for q in model.parameters()].index(id(p))] for p in g["params"]])
              for g in fused.param_groups]
    reference = type(fused)([{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in groups],
                            foreach=False)
    x, y = torch.randn(32, 6), torch.randn(32, 2)
    for _ in range(50):
        for params, opt in ((list(model.parameters()), fused), (twin, reference)):
            out = torch.func.functional_call(model, dict(zip([n for n, _ in model.named_parameters()], params,
                                                             strict=True)), (x,))
            opt.zero_grad()
            (out - y).pow(2).mean().backward()
            opt.step()
    for p, q in zip(model.parameters(), twin, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)  # rounding only
