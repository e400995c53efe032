"""The benchmarks are run by hand (`python -m bench.X`), so nothing else notices when a library name they
use changes: every module must import, and the analysis benchmark runs end to end at tiny size."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_module_imports(name):
    module = importlib.import_module(f"bench.{name}")
    assert callable(getattr(module, "main", None)) or name in ("reference", "pack_forms")


def test_the_analysis_benchmark_runs_at_tiny_size(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.analysis", "--points", "3", "--data", "random", "--samples",
                           "32", "--baseline-rows", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    for row in ("loss surface 3×3", "top Hessian eigenvalue", "Hutchinson trace", "effective ratio of 1000 neurons"):
        assert row in done.stdout, row
