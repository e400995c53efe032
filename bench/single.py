"""Single-run throughput: reglab's trainer vs the reference loop, alternated in one process.

    python -m bench.single --device cpu             # first 1024 samples (CPU default)
    python -m bench.single --device cuda            # full Fashion-MNIST, bf16 + compile

Prints samples/s of each and the ratio reglab / reference (median over repeats). Only the training
epoch is timed (no evaluation) on both sides; compile warm-up is excluded by a first untimed epoch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench import stored
from bench.reference import reference_epoch, synchronize
from reglab.config import RunConfig
from reglab.data import load_dataset
from reglab.models import build_model
from reglab.train import Trainer


def run_config(args: argparse.Namespace) -> RunConfig:
    fast = args.device.startswith("cuda") and not args.eager
    return RunConfig.from_dict({
        "seed": 0,
        "data": {"name": args.dataset, "train_subset": args.samples},
        "model": {"name": args.model},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": args.repeats + 1, "batch_size": args.batch_size, "device": args.device,
                  "eval_train_samples": 0, "amp": fast, "compile": fast, "channels_last": fast},
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="deeper_cnn")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=None,
                        help="first N training samples (default: all on CUDA, 1024 otherwise)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eager", action="store_true", help="on CUDA: no bf16/compile/channels-last")
    args = parser.parse_args()
    if args.samples is None and not args.device.startswith("cuda"):
        args.samples = 1024

    cfg = run_config(args)
    device = torch.device(args.device)
    cpu_data = load_dataset(cfg.data, device="cpu")
    n = cpu_data.x_train.shape[0]
    trainer = Trainer(cfg)
    torch.manual_seed(cfg.seed)  # the same initial weights as reglab's run
    ref_model = build_model(cfg.model, input_shape=cpu_data.input_shape, num_outputs=cpu_data.num_outputs,
                            reg=cfg.regularize).to(device)

    trainer._train_epoch()  # warm-up (compilation, allocator)
    reference_epoch(ref_model, cpu_data.x_train, cpu_data.y_train, batch_size=args.batch_size, lr=1e-3,
                    device=device, seed=1)
    ref_times, reglab_times = [], []
    for _ in range(args.repeats):
        ref_times.append(reference_epoch(ref_model, cpu_data.x_train, cpu_data.y_train,
                                         batch_size=args.batch_size, lr=1e-3, device=device, seed=1)[0])
        synchronize(device)
        start = time.perf_counter()
        trainer._train_epoch()
        synchronize(device)
        reglab_times.append(time.perf_counter() - start)

    ref, ours = statistics.median(ref_times), statistics.median(reglab_times)
    print(f"{args.model} on {args.dataset}: {n} samples/epoch, batch {args.batch_size}, device {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else torch.get_num_threads()} "
          f"{'' if device.type == 'cuda' else 'threads'}), {args.repeats} repeats, median")
    if cfg.train.amp:
        print("  reglab in bf16 autocast, compiled, channels-last; the reference loop in float32, eager, NCHW "
              "(--eager: reglab in float32 too)")
    print(f"  reference loop : {ref:8.2f} s/epoch  {n / ref:10.0f} samples/s")
    print(f"  reglab         : {ours:8.2f} s/epoch  {n / ours:10.0f} samples/s")
    print(f"  ratio reglab/reference: {ref / ours:.2f}x")


if __name__ == "__main__":
    stored(main, "single")
