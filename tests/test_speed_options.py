"""Speed options. bf16 autocast, torch.compile, the channels-last option and cuDNN's autotuner are for
CUDA: a CPU run with them set trains exactly as one without, and leaves cuDNN's process-wide flag
alone. On CPU a conv net always runs channels-last (oneDNN's layout), which changes the layout, not
the result: it trains to the same numbers as in NCHW up to rounding. The fused optimizers are used
on every device and update as torch.optim's reference (for-loop) implementations do."""

import pytest
import torch

from reglab.config import OptimConfig, RegularizeConfig, RunConfig, TrainConfig
from reglab.data import TensorData
from reglab.regularize.optim import build_optimizer
from reglab.train import loop
from reglab.train.loop import Trainer, set_cudnn_autotuner, uses_channels_last


def images() -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 12, 12, generator=g)
    y = torch.randint(0, 3, (96,), generator=g)
    return TensorData("images", x[:64], y[:64], x[64:], y[64:], num_classes=3)


CNN = RunConfig.from_dict({
    "model": {"name": "deeper_cnn", "norm": "batch", "options": {"channels": [4, 8, 8], "fc_widths": [16]}},
    "optim": {"name": "adamw", "weight_decay": 0.01},
    "train": {"epochs": 2, "batch_size": 16, "device": "cpu", "eval_train_samples": 32},
})


def metrics(epochs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if not k.endswith("seconds")} for e in epochs]


def test_cuda_speed_options_change_nothing_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    plain = CNN.override({"train.channels_last": False, "train.cudnn_benchmark": False})
    fast = CNN.override({"train.amp": True, "train.compile": True, "train.channels_last": True,
                         "train.cudnn_benchmark": True})
    plain_trainer, fast_trainer = Trainer(plain, data=images()), Trainer(fast, data=images())
    assert torch.backends.cudnn.benchmark is False
    assert fast_trainer.forward is fast_trainer.model  # not compiled off CUDA
    assert fast_trainer.optimizer.defaults["fused"]  # fused kernels on CPU too
    plain, quick = plain_trainer.fit(), fast_trainer.fit()
    assert metrics(plain.epochs) == metrics(quick.epochs)
    for a, b in zip(plain_trainer.model.state_dict().values(), fast_trainer.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_channels_last_on_cpu_changes_the_layout_not_the_result(monkeypatch):
    # momentum, not Adam: Adam amplifies rounding where the exact gradient is zero (a 1×1 projection of
    # one input channel before BatchNorm is scale-invariant), which would hide a real difference
    cfg = CNN.override({"optim.name": "momentum", "optim.lr": 0.05})
    nhwc_trainer = Trainer(cfg, data=images())
    conv = next(p for p in nhwc_trainer.model.parameters() if p.dim() == 4)
    assert nhwc_trainer.channels_last and conv.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(loop, "uses_channels_last", lambda *args: False)  # the NCHW reference
    plain_trainer = Trainer(cfg, data=images())
    assert not plain_trainer.channels_last
    plain, nhwc = plain_trainer.fit(), nhwc_trainer.fit()
    for a, b in zip(metrics(plain.epochs), metrics(nhwc.epochs), strict=True):
        assert a.keys() == b.keys()
        for key in a:  # an accuracy may move by one sample whose two top logits tie up to rounding
            tolerance = {"abs": 1 / 32 + 1e-9} if key.endswith("acc") else {"rel": 1e-5, "abs": 1e-6}
            assert a[key] == pytest.approx(b[key], **tolerance), key
    for a, b in zip(plain_trainer.model.state_dict().values(), nhwc_trainer.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_channels_last_is_for_conv_nets_always_on_cpu_and_on_request_on_cuda():
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 2))
    cpu, cuda, mps = (torch.device(d) for d in ("cpu", "cuda", "mps"))
    assert uses_channels_last(False, cnn, cpu) and not uses_channels_last(False, cnn, cuda)
    assert uses_channels_last(True, cnn, cuda)
    assert not uses_channels_last(True, mlp, cpu) and not uses_channels_last(True, cnn, mps)


def test_the_cudnn_autotuner_flag_follows_a_cuda_run_and_is_left_alone_by_others(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert TrainConfig().cudnn_benchmark and TrainConfig().channels_last  # the measured defaults, together
    for wanted in (True, False, True):
        set_cudnn_autotuner(TrainConfig(cudnn_benchmark=wanted), torch.device("cuda"))
        assert torch.backends.cudnn.benchmark is wanted
    for device in ("cpu", "mps"):
        set_cudnn_autotuner(TrainConfig(cudnn_benchmark=False), torch.device(device))
        assert torch.backends.cudnn.benchmark is True


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


def test_a_cpu_conv_net_evaluates_in_cache_sized_batches_with_the_same_metrics():
    data = images()
    x, y = torch.cat([data.x_train, data.x_test]), torch.cat([data.y_train, data.y_test])  # 96 samples
    trainer = Trainer(CNN, data=data)
    trainer.fit()
    batches = []
    hook = trainer.model.register_forward_pre_hook(lambda _module, args: batches.append(args[0].shape[0]))
    chunked = trainer.evaluate(x, y, confusion=True)
    assert batches == [32, 32, 32]  # train.eval_batch_size is 2048: a CPU conv net takes at most 32
    hook.remove()
    whole = trainer.model.eval()(trainer.in_layout(x)).float()  # one pass over all 96, by hand
    assert chunked["loss"] == pytest.approx(torch.nn.functional.cross_entropy(whole, y).item(), rel=1e-6)
    assert chunked["acc"] == (whole.argmax(1) == y).sum().item() / 96
    assert loop.eval_batch_size(2048, False) == 2048 and loop.eval_batch_size(16, True) == 16
