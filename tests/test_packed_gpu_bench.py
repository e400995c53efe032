"""bench/gpu.sh --dry-run: every code path of the GPU benchmark at tiny size on CPU, one table out."""

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import bench_sha256
from torch.utils._python_dispatch import TorchDispatchMode

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
                "one epoch under torch.profiler", "by form", "float32 K=4 NCHW", "float32 K=4 compiled",
                "compiled: torch.compile backend aot_eager", "  the same, train.compile",
                "study, train.compile: 0 failed run(s)"):
        assert row in table, row
    numbers = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert numbers["command"].startswith("bench/gpu.sh --dry-run --data-dir ")  # provenance: command, code
    assert set(numbers["code"]) == {"reglab", "git_commit", "git_dirty", "sources_sha256", "bench_sha256"}
    assert numbers["code"]["bench_sha256"] == bench_sha256()  # the benchmark code that ran
    assert numbers["environment"]["device(s) used"] == "cpu"
    assert numbers["single"]["model"]["options"]["residual"] is False  # source 000's network, as the study's
    assert "residual" not in numbers["single_residual"]["model"]["options"]  # reglab's default: residual
    study = numbers["study"]  # the study's seconds split: training and evaluation within the wall time
    assert min(study["train_s"], study["eval_s"]) > 0 and study["train_s"] + study["eval_s"] < study["reglab_s"]
    forms = numbers["forms_s"]["float32 K=4"]  # no CUDA streams on CPU
    assert set(forms) == {"vmap", "loop", "gemm"} and all(isinstance(t, float) for t in forms.values())


def test_layout_benchmark_dry_run_measures_every_cell_twice_with_one_process_per_autotuner_setting(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    done = subprocess.run([sys.executable, "-m", "bench.layout", "--dry-run", "--data-dir", str(tmp_path / "none")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in (tmp_path / "layout.txt").read_text().splitlines()
            if line.startswith(("bf16 ", "float32 "))]
    assert {tuple(row[:3]) for row in rows} == {(p, c, b) for p in ("bf16", "float32") for c in ("False", "True")
                                                for b in ("False", "True")}
    for row in rows:  # alone, K=1 and K=4, each "first / second" pass, in ms
        assert len(row) == 12 and row[4] == row[7] == row[10] == "/", row
        assert all(float(row[i]) > 0 for i in (3, 5, 6, 8, 9, 11)), row
    stored = json.loads((tmp_path / "layout.json").read_text())
    assert stored["command"].startswith("python -m bench.layout --dry-run")
    assert stored["code"]["bench_sha256"] == bench_sha256() and stored["environment"]["device(s) used"] == "cpu"


class OpNames(TorchDispatchMode):
    def __enter__(self):
        self.names = set()
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_pack_forms_compute_the_same_gradients(one_thread):
    """bench/pack_forms times vmap against a loop of solo calls and convolutions as batched matrix
    products: all must be the same computation
    (seed 000's network with BatchNorm and max-pooling, three runs with their own weights)."""
    import torch
    from bench.gpu import DRY, data_section, seed000_model, subset
    from bench.pack_forms import form_gradients, time_forms

    from reglab.config import RunConfig
    from reglab.train import Trainer
    from reglab.train.packed import PackedTrainer

    data, _ = data_section(None, DRY["standin"])
    cfgs = [RunConfig.from_dict({"seed": seed, "data": subset(data, DRY), "model": seed000_model(DRY),
                                 "train": {"batch_size": 8, "device": "cpu"}}) for seed in range(3)]
    pack = PackedTrainer([Trainer(c) for c in cfgs])
    idx = torch.randint(0, 256, (3, 8), generator=torch.Generator().manual_seed(0))
    x, y = pack.data.x_train[idx], pack.data.y_train[idx]
    by_vmap, by_loop = (form_gradients(pack, form, x, y) for form in ("vmap", "loop"))
    with OpNames() as ops:
        by_gemm = form_gradients(pack, "gemm", x, y)
    assert "aten.im2col" in ops.names and "aten.convolution" not in ops.names  # no convolution kernel at all
    assert pack.batched and pack.module.training  # the loop form left the pack's layers as they were
    for a, b, c in zip(by_vmap, by_loop, by_gemm, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    assert all(g.abs().sum() > 0 for g in by_loop)
    assert all("_conv_forward" not in vars(m) for m in pack.module.modules())  # the gemm form put the convs back
    times = time_forms(pack, steps=1)
    assert set(times) == {"vmap", "loop", "gemm"} and all(isinstance(t, float) and t > 0 for t in times.values())
