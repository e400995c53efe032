"""The CUDA speed options (bf16 autocast, torch.compile, channels-last, fused optimizers) fall back on CPU:
a CPU run with them set trains exactly as one without."""

import torch

from reglab.config import RunConfig
from reglab.data import TensorData
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
    assert not fast_trainer.optimizer.defaults["fused"]  # fused kernels are CUDA-only
    plain, quick = plain_trainer.fit(), fast_trainer.fit()
    for a, b in zip(plain.epochs, quick.epochs, strict=True):
        assert {k: v for k, v in a.items() if not k.endswith("seconds")} == \
            {k: v for k, v in b.items() if not k.endswith("seconds")}
    for a, b in zip(plain_trainer.model.state_dict().values(), fast_trainer.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
