"""Which memory layout and cuDNN setting a GPU step should use: every combination, one table.

    python -m bench.layout                      # on a CUDA machine, about 2 minutes on one H200
    python -m bench.layout --dry-run            # CPU, tiny sizes: the same code path in seconds

For each precision (bf16 autocast, float32), ``train.channels_last`` (off, on) and
``torch.backends.cudnn.benchmark`` (off, on): ms per training step of a pack of one (the single run's
step) and of a pack of 20 (the seed000-shaped study's step) of `bench.gpu`'s study runs (source 000's
DeeperCNN, batch 64, Fashion-MNIST or its stand-in), after warm-up and CUDA-graph capture
(`PackedTrainer.time_step`). The grid is measured twice, in opposite orders, and each cell prints
both timings, so that drift within the process shows. `bench/gpu.sh` measured only the two corners
(all off; channels-last with the autotuner); this fills in the rest before either becomes a default.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from bench import stored
from bench.gpu import DRY, FULL, data_section, pack_configs, study_spec
from reglab.train import Trainer
from reglab.train.packed import PackedTrainer

SETTINGS = list(itertools.product((True, False), (False, True), (False, True)))  # amp, channels_last, benchmark


def step_ms(configs: list, amp: bool, channels_last: bool, benchmark: bool, steps: int) -> float:
    """ms per step of a pack of `configs` under one setting (cuDNN's autotuner restored afterwards)."""
    previous, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, benchmark
    try:
        pack = PackedTrainer([Trainer(c.override({"train.amp": amp, "train.channels_last": channels_last}))
                              for c in configs])
        return 1e3 * pack.time_step(steps)
    finally:
        torch.backends.cudnn.benchmark = previous


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: exercise the code path")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--data-dir", type=Path, default=Path(".gpudata/fashion-mnist"))
    args = parser.parse_args()
    size = DRY if args.dry_run else FULL
    device = torch.device(args.device or ("cpu" if args.dry_run else "cuda"))
    data, note = data_section(args.data_dir if args.data_dir.exists() else None, size["standin"])
    configs = pack_configs(study_spec(data, size, device, amp=False), size)
    largest, steps = max(size["pack_sizes"]), 2 if args.dry_run else 30
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({where}), torch {torch.__version__}; data: {note}", flush=True)
    print(f"ms per step, batch 64, two passes (grid, then the grid reversed); K = 1 and K = {largest}", flush=True)
    timings: dict[tuple, list[float]] = {}
    for setting in SETTINGS + SETTINGS[::-1]:
        for k in (1, largest):
            timings.setdefault((k, *setting), []).append(step_ms(configs[:k], *setting, steps))
    print(f"\n{'precision':<10}{'channels_last':>15}{'cudnn.benchmark':>17}{'K=1':>16}{f'K={largest}':>18}")
    for amp, channels_last, benchmark in SETTINGS:
        cells = "".join(f"{' / '.join(f'{t:.2f}' for t in timings[(k, amp, channels_last, benchmark)]):>17}"
                        for k in (1, largest))
        print(f"{'bf16' if amp else 'float32':<10}{str(channels_last):>15}{str(benchmark):>17}{cells}")


if __name__ == "__main__":
    stored(main, "layout")
