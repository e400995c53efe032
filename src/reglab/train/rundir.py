"""A run's directory: resolved config, append-only per-epoch metrics, summary, weights, checkpoint.

    run_dir/
      config.json      the resolved RunConfig
      metrics.jsonl    one JSON object per finished epoch, appended and fsynced (survives a crash)
      summary.json     the final RunResult (written last: its presence means the run ended)
      checkpoint.pt    model, optimizer, schedule, EMA, RNG states, epoch (atomic replace)
      model.pt         final weights of the evaluated model (state_dict, loads with weights_only)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch


def clean_json(value: Any) -> Any:
    """Non-finite floats become None so that every file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(clean_json(data), indent=2))
    os.replace(tmp, path)


def save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def append_metrics(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(clean_json(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(path: Path, *, up_to_epoch: int | None = None) -> list[dict]:
    """Per-epoch records; a torn last line (crash mid-write) is dropped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if up_to_epoch is not None and record["epoch"] > up_to_epoch:
            break
        records.append(record)
    return records


def rewrite_metrics(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(clean_json(r)) + "\n" for r in records))
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, never pickled code."""
    return torch.load(path, map_location=device, weights_only=True)


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no config.json; is {run_dir} a reglab run directory?")
    return json.loads(path.read_text())
