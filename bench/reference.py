"""The loop a user writes by default: TensorDataset + DataLoader (shuffle), `.to(device)` per batch,
eager PyTorch, Adam, cross-entropy. Same model and hyper-parameters as the reglab run it is timed
against; this is the denominator of every ratio the benchmarks print."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def reference_epoch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, lr: float,
                    device: torch.device, seed: int) -> tuple[float, float]:
    """Train `model` for one epoch on CPU tensors `x, y`; return (seconds, mean loss)."""
    torch.manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
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
        total += loss.item()
        batches += 1
    synchronize(device)
    return time.perf_counter() - start, total / batches


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
