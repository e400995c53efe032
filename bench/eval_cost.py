"""Cost of the per-epoch evaluation: training vs evaluation time with the old fixed train-eval subset
(10,000 samples) and with ``eval_train_samples = "auto"``, both with the real trainer.

    python -m bench.eval_cost --device cpu --dataset mnist-5k                 # 4,000 train / 1,000 test
    python -m bench.eval_cost --device cuda --dataset fashion-mnist --train-subset 6000

Each setting trains `--epochs` epochs (the first one, with CUDA warm-up, is not reported) and prints
the last epoch's `train_seconds`, `eval_seconds` and their ratio, and the number of samples evaluated.
"""

from __future__ import annotations

import argparse

from bench import stored
from reglab.config import RunConfig
from reglab.train import Trainer
from reglab.train.eval_budget import train_eval_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--model", default="deeper_cnn")
    parser.add_argument("--train-subset", type=int, default=None, help="first N training samples")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    print(f"{args.model} on {args.dataset} ({args.device}), last of {args.epochs} epochs")
    print(f"{'eval_train_samples':>18} {'evaluated':>10} {'train_s':>8} {'eval_s':>8} {'eval/train':>10}")
    for setting in (10_000, "auto"):
        cfg = RunConfig.from_dict({
            "data": {"name": args.dataset, "train_subset": args.train_subset}, "model": {"name": args.model},
            "train": {"epochs": args.epochs, "device": args.device, "eval_train_samples": setting,
                      "checkpoint_every": 0},
        })
        trainer = Trainer(cfg)
        last = trainer.fit().epochs[-1]
        n_train, n_test = trainer.data.x_train.shape[0], trainer.data.x_test.shape[0]
        evaluated = train_eval_size(setting, n_train) + n_test
        print(f"{setting!s:>18} {evaluated:>10,} {last['train_seconds']:>8.2f} {last['eval_seconds']:>8.2f} "
              f"{last['eval_seconds'] / last['train_seconds']:>10.2f}")


if __name__ == "__main__":
    stored(main, "eval_cost")
