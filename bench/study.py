"""A whole study: the reference loop run after run vs `reglab` (packed on CUDA), in one process.

    python -m bench.study --device cuda                       # seed000 arms: 4 arms × 5 seeds × 10 epochs
    python -m bench.study --device cpu                        # CPU default: 2 arms × 2 seeds × 1 epoch, 1024 samples
    python -m bench.study --device cpu --pack off 4           # reglab once per pack setting (CPU evidence)

The study is the seed000 preset (DeeperCNN with BatchNorm, momentum SGD, cosine schedule on
MNIST) with its first `--arms` arms, on `--dataset` (default: MNIST where its files are found, else
the 5,000 real digits of mnist-5k, which every installation has). Both sides train the same runs (model, optimizer,
schedule and initialisation from the run config) and evaluate the test set after every epoch;
reglab's per-epoch evaluation of training samples and its checkpoints are switched off so the work
matches. reglab runs as `reglab compare` does (on CPU 2 worker processes where there are ≥ 2 cores,
each with its runs' `train.threads`); the reference loop runs after run in one process, on CPU with
as many torch threads as reglab's workers use in all (else a 1-thread reference would face 2 cores).
Prints the wall time of each side, the ratio and the final test accuracy per arm (mean ± std over
seeds).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench import stored
from bench.reference import reference_run
from reglab.cli.study import default_workers
from reglab.data import get_dataset_info, load_dataset
from reglab.study import StudySpec, load_spec, make_executor, run_study
from reglab.study.packed import parse_pack
from reglab.train.loop import cached_dataset, torch_threads

CPU_DEFAULTS = {"arms": 2, "seeds": 2, "epochs": 1, "train_subset": 1024, "test_subset": 1000}
CUDA_DEFAULTS = {"arms": 4, "seeds": 5, "epochs": 10, "train_subset": None, "test_subset": None}


def bench_spec(args: argparse.Namespace) -> StudySpec:
    spec = load_spec("seed000", seeds=args.seeds, epochs=args.epochs).to_dict()
    spec["arms"] = dict(list(spec["arms"].items())[:args.arms])
    spec["base"] = {**spec["base"], "train": {**spec["base"].get("train", {}), "eval_train_samples": 0,
                                              "checkpoint_every": 0}}
    overrides = {"train.device": args.device, "data.name": args.dataset, "data.train_subset": args.train_subset,
                 "data.test_subset": args.test_subset}
    return StudySpec.from_dict(spec).override({k: v for k, v in overrides.items() if v is not None})


def spread(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arms", type=int, help="first N arms of seed000 (default: 4 on CUDA, 2 otherwise)")
    parser.add_argument("--seeds", type=int, help="seeds per arm (default: 5 on CUDA, 2 otherwise)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: 10 on CUDA, 1 otherwise)")
    parser.add_argument("--train-subset", type=int, help="first N training samples (default: all on CUDA, 1024)")
    parser.add_argument("--test-subset", type=int, help="first N test samples (default: all on CUDA, 1000)")
    parser.add_argument("--pack", nargs="+", default=["auto"], help="reglab runs, one per value: auto|off|K")
    parser.add_argument("--dataset", default=None, help="data set (default: mnist if found, else mnist-5k)")
    parser.add_argument("--skip-reference", action="store_true", help="time reglab only")
    parser.add_argument("--workers", type=int, help="reglab's worker processes (default: as `reglab compare` "
                        "runs, 2 with ≥ 2 cores; 1 on CUDA)")
    args = parser.parse_args()
    if args.dataset is None:
        args.dataset = "mnist" if get_dataset_info("mnist").probe(None) is not None else "mnist-5k"
    for key, value in (CUDA_DEFAULTS if args.device.startswith("cuda") else CPU_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    packs = [parse_pack(p) for p in args.pack]
    if args.workers is None:
        args.workers = 1 if args.device.startswith("cuda") else default_workers()

    spec = bench_spec(args)
    device = torch.device(args.device)
    first = spec.arm_config(next(iter(spec.arms)), spec.seed_list[0])
    reference_threads = args.workers * first.train.threads  # the cores reglab's workers use
    print(f"seed000: {args.arms} arms × {args.seeds} seeds × {args.epochs} epochs, train subset "
          f"{args.train_subset or 'all'}, device {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}); "
          f"reglab in {args.workers} worker(s), train.threads = {first.train.threads} each"
          + (f"; reference with {reference_threads} torch thread(s)" if device.type == "cpu" else ""))
    cached_dataset(first, device)  # load outside the timings
    walls: dict[str, float] = {}
    accuracy: dict[str, dict[str, list[float]]] = {}
    if not args.skip_reference:
        configs = {arm: [spec.arm_config(arm, seed) for seed in spec.seed_list] for arm in spec.arms}
        data = load_dataset(next(iter(configs.values()))[0].data, device="cpu")
        with torch_threads(reference_threads if device.type == "cpu" else torch.get_num_threads()):
            start = time.perf_counter()
            accuracy["reference"] = {arm: [reference_run(cfg, data, device)[1] for cfg in cfgs]
                                     for arm, cfgs in configs.items()}
            walls["reference"] = time.perf_counter() - start
    for pack in packs:
        name = "local" if pack == "off" else "packed"
        executor = make_executor(name, workers=args.workers, device=args.device,
                                 **({} if pack == "off" else {"pack": pack}))
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = run_study(spec, Path(out), executor=executor, progress=False)
            label = f"reglab --pack {pack}"
            walls[label] = time.perf_counter() - start
        runs = result.runs
        accuracy[label] = {arm: runs[runs["arm"] == arm]["final_test_acc"].tolist() for arm in spec.arms}

    print("wall time (s):")
    for label, wall in walls.items():
        ratio = f"  reference / this = {walls['reference'] / wall:.2f}x" if "reference" in walls else ""
        print(f"  {label:22s} {wall:9.1f}{ratio}")
    print("final test accuracy, mean ± std over seeds:")
    for arm in spec.arms:
        print(f"  {arm}")
        for label, by_arm in accuracy.items():
            print(f"    {label:20s} {spread(by_arm[arm])}")


if __name__ == "__main__":
    stored(main, "study")
