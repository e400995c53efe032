"""bench/gpu.sh --dry-run: every code path of the GPU benchmark at tiny size on CPU, one table out."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_dry_run_prints_and_writes_its_table(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run", "--data-dir", str(tmp_path / "none")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "gpu_bench.txt").read_text()
    assert table in done.stdout
    for row in ("single run: s/epoch", "the same, reglab in float32", "residual DeeperCNN, as run",
                "study: wall s (8 runs × 1 epochs)",
                "loss surface 5×5", "scaled to 8",
                "stand-in data", "Stochastic depth conv1 p=0.2", "0 failed run(s)",
                "one epoch under torch.profiler"):
        assert row in table, row
    numbers = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert numbers["single"]["model"]["options"]["residual"] is False  # source 000's network, as the study's
    assert "residual" not in numbers["single_residual"]["model"]["options"]  # reglab's default: residual
