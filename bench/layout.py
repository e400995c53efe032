"""Which memory layout and cuDNN setting a GPU step should use: every combination, one table.

    python -m bench.layout                      # on a CUDA machine, about a minute on one H200
    python -m bench.layout --dry-run            # CPU, tiny sizes: the same code paths in seconds

For each precision (bf16 autocast, float32), ``train.channels_last`` (off, on) and
``train.cudnn_benchmark`` (cuDNN's autotuner off, on): ms per training step of one run trained alone
by `Trainer` (the eager step, used on CUDA where a run cannot be packed), of a pack of one (the single
run's step) and of a pack of 20 (the seed000-shaped study's step) of `bench.gpu`'s study runs (source
000's DeeperCNN, batch 64, Fashion-MNIST or its stand-in), after warm-up and, for packs, CUDA-graph
capture (`PackedTrainer.time_step`).

Each autotuner setting is measured in a process of its own: torch keeps the algorithm it chose the
first time a convolution shape ran for the rest of the process (its cuDNN plan cache is keyed by
shape, layout and dtype, not by the flag), so a setting changed within a process would time the
first setting's choice again. Within a process the grid is measured twice, in opposite orders, and
each cell prints both timings, so that drift shows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

import torch

from bench import stored
from bench.gpu import DRY, FULL, data_section, pack_configs, study_spec
from reglab.study.packed import solo_step_seconds
from reglab.train import Trainer
from reglab.train.packed import PackedTrainer

GRID = list(itertools.product((True, False), (False, True)))  # amp (bf16 autocast), channels_last


def step_ms(column: str | int, configs: list, amp: bool, channels_last: bool, steps: int) -> float:
    """ms per step in one precision and layout of the column's step: ``"alone"``, the first config trained
    alone by `Trainer`; K, a pack of the first K configs."""
    configs = [c.override({"train.amp": amp, "train.channels_last": channels_last}) for c in configs]
    if column == "alone":
        return 1e3 * solo_step_seconds(configs[0], steps)
    return 1e3 * PackedTrainer([Trainer(c) for c in configs[:column]]).time_step(steps)


def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    """This process's half of the table: every (precision, layout, K) with ``train.cudnn_benchmark =
    args.autotuner``, the grid and then the grid reversed."""
    size = DRY if args.dry_run else FULL
    device = torch.device(args.device)
    data, _ = data_section(args.data_dir if args.data_dir.exists() else None, size["standin"])
    speed = {"channels_last": False, "cudnn_benchmark": args.autotuner == "on"}
    configs = pack_configs(study_spec(data, size, device, amp=False, speed=speed), size)
    steps = 2 if args.dry_run else 30
    timings: dict[str, list[float]] = {}
    for amp, channels_last in GRID + GRID[::-1]:
        for k in ("alone", 1, max(size["pack_sizes"])):
            ms = step_ms(k, configs, amp, channels_last, steps)
            timings.setdefault(f"{amp} {channels_last} {k}", []).append(ms)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: exercise the code paths")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--data-dir", type=Path, default=Path(".gpudata/fashion-mnist"))
    parser.add_argument("--autotuner", choices=["on", "off"], help=argparse.SUPPRESS)  # one process's half
    args = parser.parse_args()
    args.device = args.device or ("cpu" if args.dry_run else "cuda")
    if args.autotuner:
        print(json.dumps(measure(args)))
        return
    device = torch.device(args.device)
    size = DRY if args.dry_run else FULL
    _, note = data_section(args.data_dir if args.data_dir.exists() else None, size["standin"])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    largest = max(size["pack_sizes"])
    print(f"device {device} ({where}), torch {torch.__version__}; data: {note}", flush=True)
    print(f"ms per step, batch 64, two passes (grid, then the grid reversed): one run alone (Trainer), packs of "
          f"K = 1 and K = {largest}; each autotuner setting in its own process", flush=True)
    child = [sys.executable, "-m", "bench.layout", "--device", args.device, "--data-dir", str(args.data_dir),
             *(["--dry-run"] if args.dry_run else [])]
    halves = {on: json.loads(subprocess.run([*child, "--autotuner", on], check=True, capture_output=True,
                                            text=True).stdout.strip().splitlines()[-1]) for on in ("off", "on")}
    columns = ("alone", 1, largest)
    print(f"\n{'precision':<10}{'channels_last':>15}{'cudnn_benchmark':>17}{'alone':>16}{'K=1':>17}"
          f"{f'K={largest}':>17}")
    for amp, channels_last in GRID:
        for on in ("off", "on"):
            cells = "".join(f"{' / '.join(f'{t:.2f}' for t in halves[on][f'{amp} {channels_last} {k}']):>17}"
                            for k in columns)
            print(f"{'bf16' if amp else 'float32':<10}{str(channels_last):>15}{str(on == 'on'):>17}{cells}")


if __name__ == "__main__":
    stored(main, "layout")
