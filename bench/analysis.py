"""Analysis timings: a 2-D loss surface, Hessian sharpness and the effective ratio of a 1000-neuron layer.

    python -m bench.analysis --device cuda                  # 51×51 surface, 784-1000-10 MLP, 1000 samples
    python -m bench.analysis --device cpu --points 21 --data random

The model is the 784-1000-10 ReLU MLP (`mlp` with widths [1000]) on the first `--samples`
Fashion-MNIST training images (`--data random`: Gaussian images and random labels of the same
shape, for machines without the data set; the timings do not depend on the values), optionally
trained for `--epochs` first. Timed, each after a warm-up on a 3×3 grid:

* the cross-entropy surface L(θ + α·δ + β·η) on a ``points × points`` grid over [−1, 1]² with
  filter-normalized directions (`reglab.theory.loss_surface`), and the plain way of evaluating the
  same grid — `functional_call` vmapped over chunks of points, every point its own forward pass —
  whose time is the denominator of the printed speed-up (`--baseline-rows` of the grid's rows,
  scaled to the whole grid; 0 skips it);
* the top Hessian eigenvalue (Lanczos) and a 20-probe Hutchinson trace on the same samples;
* `reglab.theory.effective_ratio_greedy` of the 1000 hidden neurons.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call

from bench import stored
from bench.reference import synchronize
from reglab.config import RunConfig
from reglab.models import build_model
from reglab.theory import (
    effective_ratio_greedy,
    filter_normalized_direction,
    hessian_top_eigenvalue,
    hessian_trace,
    loss_surface,
)


def timed(device: torch.device, fn):
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return time.perf_counter() - start, value


def plain_surface(model, d1, d2, x, y, alphas, betas, chunk_size: int) -> torch.Tensor:
    """The grid point by point: θ + α·d1 + β·d2 built per point, `functional_call` vmapped over chunks."""
    named = [(n, p.detach()) for n, p in model.named_parameters()]
    buffers = dict(model.named_buffers())

    def loss_at(c: torch.Tensor) -> torch.Tensor:
        params = {n: p + c[0] * a + c[1] * b for (n, p), a, b in zip(named, d1, d2, strict=True)}
        return F.cross_entropy(functional_call(model, {**buffers, **params}, (x,)), y)

    grid = torch.cartesian_prod(alphas, betas)
    with torch.no_grad():
        return torch.cat([torch.vmap(loss_at)(chunk) for chunk in grid.split(chunk_size)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=51, help="grid points per axis")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=0, help="train the MLP this many epochs first")
    parser.add_argument("--chunk-size", type=int, default=32, help="grid points evaluated per vmapped call")
    parser.add_argument("--data", choices=["fashion-mnist", "random"], default="fashion-mnist")
    parser.add_argument("--baseline-rows", type=int, default=3, help="grid rows timed the plain way (0: skip)")
    args = parser.parse_args()

    cfg = RunConfig.from_dict({
        "data": {"name": "fashion-mnist", "train_subset": args.samples},
        "model": {"name": "mlp", "options": {"widths": [1000]}},
        "train": {"epochs": max(1, args.epochs), "device": args.device, "eval_train_samples": 0},
    })
    if args.data == "random":
        if args.epochs:
            parser.error("--epochs needs --data fashion-mnist")
        device = torch.device(args.device)
        torch.manual_seed(0)
        model = build_model(cfg.model, input_shape=(1, 28, 28), num_outputs=10, reg=cfg.regularize).to(device)
        x = torch.randn(args.samples, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (args.samples,), device=device)
    else:
        from reglab.train import Trainer

        trainer = Trainer(cfg)
        if args.epochs:
            trainer.fit()
        model, device = trainer.model, trainer.device
        x, y = trainer.data.x_train, trainer.data.y_train
    model.eval()
    generator = torch.Generator(device=device).manual_seed(0)
    d1, d2 = (filter_normalized_direction(model, generator) for _ in range(2))
    grid = torch.linspace(-1.0, 1.0, args.points, device=device)

    def surface(values: torch.Tensor) -> torch.Tensor:
        return loss_surface(model, d1, d2, F.cross_entropy, x, y, values, values, chunk_size=args.chunk_size)

    surface(torch.linspace(-1.0, 1.0, 3, device=device))
    seconds, losses = timed(device, lambda: surface(grid))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"784-1000-10 MLP, {x.shape[0]} samples ({args.data}), device {device} ({where}), torch {torch.__version__}")
    print(f"  loss surface {args.points}×{args.points}: {seconds:8.2f} s  "
          f"(loss at centre {losses[args.points // 2, args.points // 2]:.4f}, max {losses.max():.4f})")
    if args.baseline_rows:
        rows = grid[:args.baseline_rows]
        plain_surface(model, d1, d2, x, y, grid[:1], grid[:3], args.chunk_size)
        plain_seconds, plain = timed(device, lambda: plain_surface(model, d1, d2, x, y, rows, grid, args.chunk_size))
        torch.testing.assert_close(plain.view(len(rows), -1), losses[:len(rows)], rtol=1e-4, atol=1e-4)
        whole = plain_seconds * args.points / len(rows)
        print(f"  plain vmapped grid, {len(rows)} of {args.points} rows: {plain_seconds:8.2f} s → whole grid "
              f"≈ {whole:.1f} s; speed-up ×{whole / seconds:.1f} (same losses)")
    top_seconds, top = timed(device, lambda: hessian_top_eigenvalue(model, F.cross_entropy, x, y, tol=1e-3))
    trace_seconds, (trace, se) = timed(device, lambda: hessian_trace(model, F.cross_entropy, x, y, samples=20))
    print(f"  top Hessian eigenvalue (Lanczos): {top_seconds:8.2f} s  (λ_max = {top:.4g})")
    print(f"  Hutchinson trace, 20 probes:      {trace_seconds:8.2f} s  (tr H = {trace:.4g} ± {se:.2g})")
    ratio_seconds, ratio = timed(device, lambda: effective_ratio_greedy(model[1]))
    print(f"  effective ratio of 1000 neurons: {ratio_seconds:8.3f} s  (r/m = {ratio:.3f})")


if __name__ == "__main__":
    stored(main, "analysis")
