"""Per-run cost of a packed step against one run trained alone, on this machine's CPU.

    python -m bench.pack_cpu                                  # MLP 64-64, batch 50, and MLP 256-256, batch 100
    python -m bench.pack_cpu --widths 128 128 --batch 100 --packs 2 4 8

MNIST-1D, AdamW, one torch thread (as each of two workers has): `solo_step_seconds` (the solo
`Trainer` step) against `PackedTrainer.time_step` divided by K — the comparison ``--pack auto`` makes.
Best of three timings per side (the least disturbed).
"""

from __future__ import annotations

import argparse

import torch

from bench import stored
from reglab.config import RunConfig
from reglab.study.packed import solo_step_seconds
from reglab.train import Trainer
from reglab.train.packed import PackedTrainer


def config(seed: int, widths: list[int], batch: int) -> RunConfig:
    return RunConfig.from_dict({"seed": seed, "data": {"name": "mnist1d"},
                                "model": {"name": "mlp", "options": {"widths": widths}},
                                "optim": {"name": "adamw", "lr": 1e-3},
                                "train": {"epochs": 2, "batch_size": batch, "device": "cpu"}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=None, help="one MLP (default: the two above)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--packs", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cases = [(args.widths, args.batch or 100)] if args.widths else [([64, 64], 50), ([256, 256], 100)]
    torch.set_num_threads(args.threads)
    for widths, batch in cases:
        solo = min(solo_step_seconds(config(0, widths, batch), 40, threads=args.threads) for _ in range(3))
        cells = [f"MLP {'-'.join(map(str, widths))}, batch {batch}: alone {1e3 * solo:.2f} ms/step"]
        for k in args.packs:
            pack = PackedTrainer([Trainer(config(seed, widths, batch)) for seed in range(k)])
            per_run = min(pack.time_step(20) for _ in range(3)) / k
            cells.append(f"K={k} {1e3 * per_run:.2f} ms/run ({solo / per_run:.1f}x)")
        print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    stored(main, "pack_cpu")
