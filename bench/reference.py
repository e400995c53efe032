"""The loop a user writes by default: TensorDataset + DataLoader (shuffle), `.to(device)` per batch,
eager PyTorch, Adam, cross-entropy, torch's default cuDNN setting (heuristic algorithm choice, no
autotuner). Same model and hyper-parameters as the reglab run it is timed against; this is the
denominator of every ratio the benchmarks print."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from reglab.config import RunConfig
from reglab.data import TensorData
from reglab.models import build_model
from reglab.regularize.optim import Schedule, build_optimizer


@contextlib.contextmanager
def torch_default_cudnn() -> Iterator[None]:
    """``torch.backends.cudnn.benchmark`` off, torch's default, for the duration (a reglab CUDA run built
    in the same process turns it on: ``train.cudnn_benchmark``)."""
    previous, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


@torch_default_cudnn()
def reference_epoch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, lr: float,
                    device: torch.device, seed: int, optimizer: torch.optim.Optimizer | None = None,
                    schedule: Schedule | None = None) -> tuple[float, float]:
    """Train `model` for one epoch on CPU tensors `x, y` (Adam with `lr` unless an `optimizer` is given,
    `schedule` stepped after every optimizer step); return (seconds, mean loss)."""
    torch.manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    synchronize(device)
    start = time.perf_counter()
    total, batches = 0.0, 0
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        total += loss.item()
        batches += 1
    synchronize(device)
    return time.perf_counter() - start, total / batches


@torch.no_grad()
@torch_default_cudnn()
def reference_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device,
                       batch_size: int = 2048) -> float:
    """Test accuracy of `model` on CPU tensors, batch by batch moved to `device`."""
    model.eval()
    right = sum((model(xb.to(device)).argmax(1) == yb.to(device)).sum().item()
                for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True))
    return right / x.shape[0]


def reference_run(cfg: RunConfig, data: TensorData, device: torch.device) -> tuple[float, float]:
    """One run of a study the default way: the run's model, optimizer and schedule (reglab's factories,
    initialised with its seed), `reference_epoch` per epoch and test accuracy after each; returns
    (seconds, final test accuracy)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, input_shape=data.input_shape, num_outputs=data.num_outputs,
                        reg=cfg.regularize).to(device)
    optimizer = build_optimizer(model, cfg.optim, cfg.regularize)
    steps = math.ceil(data.x_train.shape[0] / cfg.train.batch_size)
    schedule = Schedule(optimizer, cfg.optim, steps_per_epoch=steps, total_steps=cfg.train.epochs * steps)
    start = time.perf_counter()
    for epoch in range(cfg.train.epochs):
        reference_epoch(model, data.x_train, data.y_train, batch_size=cfg.train.batch_size, lr=cfg.optim.lr,
                        device=device, seed=cfg.seed * 1000 + epoch, optimizer=optimizer, schedule=schedule)
        accuracy = reference_accuracy(model, data.x_test, data.y_test, device=device)
    synchronize(device)
    return time.perf_counter() - start, accuracy


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
