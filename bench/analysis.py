"""Analysis timings: a 2-D loss surface and the effective ratio of a 1000-neuron layer.

    python -m bench.analysis --device cuda                  # 51×51 surface, 784-1000-10 MLP, 1000 samples
    python -m bench.analysis --device cpu --points 21

The model is the 784-1000-10 ReLU MLP (`mlp` with widths [1000]) on the first `--samples`
Fashion-MNIST training images, optionally trained for `--epochs` first. Timed: the cross-entropy
surface L(θ + α·δ + β·η) on a ``points × points`` grid over [−1, 1]² with filter-normalized random
directions (`reglab.theory.loss_surface`), and `reglab.theory.effective_ratio` of the 1000 hidden
neurons. The first surface call is a warm-up on a 3×3 grid (allocator, kernel selection).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bench.reference import synchronize
from reglab.config import RunConfig
from reglab.theory import effective_ratio, filter_normalized_direction, loss_surface
from reglab.train import Trainer


def timed(device: torch.device, fn):
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=51, help="grid points per axis")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=0, help="train the MLP this many epochs first")
    parser.add_argument("--chunk-size", type=int, default=32, help="grid points evaluated per vmapped call")
    args = parser.parse_args()

    cfg = RunConfig.from_dict({
        "data": {"name": "fashion-mnist", "train_subset": args.samples},
        "model": {"name": "mlp", "options": {"widths": [1000]}},
        "train": {"epochs": max(1, args.epochs), "device": args.device, "eval_train_samples": 0},
    })
    trainer = Trainer(cfg)
    if args.epochs:
        trainer.fit()
    model, device = trainer.model.eval(), trainer.device
    x, y = trainer.data.x_train, trainer.data.y_train
    generator = torch.Generator(device=device).manual_seed(0)
    d1, d2 = (filter_normalized_direction(model, generator) for _ in range(2))
    grid = torch.linspace(-1.0, 1.0, args.points)

    def surface(values: torch.Tensor) -> torch.Tensor:
        return loss_surface(model, d1, d2, F.cross_entropy, x, y, values, values, chunk_size=args.chunk_size)

    surface(torch.linspace(-1.0, 1.0, 3))
    seconds, losses = timed(device, lambda: surface(grid))
    ratio_seconds, ratio = timed(device, lambda: effective_ratio(model[1]))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"784-1000-10 MLP, {x.shape[0]} samples, device {device} ({where}), torch {torch.__version__}")
    print(f"  loss surface {args.points}×{args.points}: {seconds:8.2f} s  "
          f"(loss at centre {losses[args.points // 2, args.points // 2]:.4f}, max {losses.max():.4f})")
    print(f"  effective ratio of 1000 neurons: {ratio_seconds:8.3f} s  (r/m = {ratio:.3f})")


if __name__ == "__main__":
    main()
