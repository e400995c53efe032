"""What the pack's channel-wise layers (`reglab.train.pack_layers`) save, on this machine's CPU.

    python -m bench.pack_layers                # layer timings, ops per step, a step of a pack of 4
    python -m bench.pack_layers --step-only    # the last two only: runs on checkouts without pack_layers

* batch norm, forward and backward under vmap (64 channels of 28×28, batch 16, K = 1 and 4):
  `pack_batch_norm` against torch's own batching rule for `F.batch_norm`;
* max-pooling and the next 3×3 convolution, forward and backward under vmap: `pack_max_pool2d`
  against torch's rule for `F.max_pool2d`;
* non-view aten ops dispatched by one step of a pack of one seed000 DeeperCNN (momentum SGD, batch 64)
  and by one step of the solo `Trainer` (counted with a `TorchDispatchMode`; channels 8/16/16 and
  FC 16, so that the parameters fit one of the CPU optimizer's column chunks and only the network's
  ops differ from a GPU step's);
* ms per step of a pack of 4 seed000 DeeperCNNs at batch 16 (`PackedTrainer.time_step`, best of 3).

One torch thread; generated 1×28×28 data of Fashion-MNIST's shape (nothing to download). Best of
three timings each (the least disturbed).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import vmap
from torch.utils._python_dispatch import TorchDispatchMode

from bench import stored
from bench.gpu import STANDIN
from reglab.config import RunConfig
from reglab.train.loop import Trainer
from reglab.train.packed import PackedTrainer

VIEWS = {"view", "_unsafe_view", "expand", "t", "transpose", "permute", "unsqueeze", "squeeze", "slice", "select",
         "as_strided", "split", "split_with_sizes", "alias", "detach", "unbind", "reshape", "unflatten", "flatten",
         "lift_fresh"}


def best_ms(step: Callable[[], None], repeats: int = 10) -> float:
    """Best of three means over `repeats` calls of `step`, after two warm-up calls, in ms."""
    for _ in range(2):
        step()
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        timings.append((time.perf_counter() - start) / repeats)
    return 1e3 * min(timings)


def layer_timings(k: int, batch: int = 16, channels: int = 64, size: int = 28) -> dict[str, float]:
    """Forward and backward of batch norm and of max-pool → conv under vmap, ours vs torch's rules."""
    from reglab.train.pack_layers import pack_batch_norm, pack_max_pool2d

    conv_output = torch.randn(batch, k * channels, size, size, requires_grad=True)  # (B, K·C, H, W)
    runs = conv_output.view(batch, k, channels, size, size)  # as vmap sees a convolution's output
    weight, bias = torch.randn(k, channels, requires_grad=True), torch.randn(k, channels, requires_grad=True)
    mean, var = torch.zeros(k, channels), torch.ones(k, channels)
    kernel = torch.randn(k, channels, channels, 3, 3, requires_grad=True)

    def norm(fn):
        def step():
            out = vmap(fn, in_dims=(1, 0, 0, 0, 0))(runs, weight, bias, mean, var)
            torch.autograd.grad(out.sum(), [conv_output, weight, bias])
        return step

    def pool_conv(pool):
        def step():
            out = vmap(lambda x, w: F.conv2d(pool(x), w, padding=1), in_dims=(1, 0))(runs, kernel)
            torch.autograd.grad(out.sum(), [conv_output, kernel])
        return step

    pool_args = ([2, 2], [2, 2], [0, 0], [1, 1], False)
    return {
        "batch norm: pack_batch_norm": best_ms(norm(lambda *a: pack_batch_norm(*a, 0.1, 1e-5))),
        "batch norm: torch's rule": best_ms(norm(lambda x, w, b, m, v: F.batch_norm(x, m, v, w, b, True, 0.1, 1e-5))),
        "max-pool → conv: pack_max_pool2d": best_ms(pool_conv(lambda x: pack_max_pool2d(x, *pool_args))),
        "max-pool → conv: torch's rule": best_ms(pool_conv(lambda x: F.max_pool2d(x, 2))),
    }


def seed000_config(seed: int, batch: int, small: bool = False) -> RunConfig:
    options = {"residual": False} | ({"channels": [8, 16, 16], "fc_widths": [16]} if small else {})
    return RunConfig.from_dict({
        "seed": seed, "data": {"name": STANDIN, "options": {"n_train": 512, "n_test": 64}},
        "model": {"name": "deeper_cnn", "norm": "batch", "options": options},
        "optim": {"name": "momentum", "lr": 0.05, "momentum": 0.9},
        "train": {"epochs": 1, "batch_size": batch, "device": "cpu", "eval_train_samples": 0}})


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in VIEWS:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def ops_per_step(batch: int = 64) -> tuple[int, float]:
    """Non-view ops of one step: a pack of one seed000 DeeperCNN, and the solo `Trainer` (an epoch's mean)."""
    cfg = seed000_config(0, batch, small=True)
    pack = PackedTrainer([Trainer(cfg)])
    pack.time_step(1)
    pack.optimizer.set_lr_table(pack._lr_table(4))
    idx = torch.randint(0, 512, (1, batch))
    with OpCounter() as packed:
        pack._step(idx)
    solo = Trainer(cfg)
    solo._train_epoch()
    with OpCounter() as alone:
        solo._train_epoch()
    return len(packed.ops), len(alone.ops) / solo.steps_per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step-only", action="store_true", help="only the op counts and the pack step")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.step_only:
        for k in (1, 4):
            for name, ms in layer_timings(k).items():
                print(f"K={k}  {name:<36}{ms:8.2f} ms forward + backward", flush=True)
    packed, alone = ops_per_step()
    print(f"non-view ops per step: pack of one {packed}, solo Trainer {alone:.0f}", flush=True)
    pack = PackedTrainer([Trainer(seed000_config(seed, 16)) for seed in range(4)])
    print(f"pack of 4 seed000 DeeperCNNs, batch 16: {1e3 * min(pack.time_step(4) for _ in range(3)):.1f} ms/step")


if __name__ == "__main__":
    stored(main, "pack_layers")
