"""Every GPU benchmark in one process, printed as one table (run through bench/gpu.sh).

    bench/gpu.sh                                   # on a CUDA machine: the full benchmark, < 8 minutes
    bench/gpu.sh --dry-run                         # CPU, tiny sizes: every code path, seconds
    bench/gpu.sh --data-dir .gpudata/fashion-mnist # IDX files of Fashion-MNIST (else a stand-in, said so)
    bench/gpu.sh --nchw --cudnn-heuristics         # every row as reglab ran before its measured defaults

Rows, each against the plain PyTorch loop of `bench.reference` (TensorDataset + DataLoader, eager,
same model, optimizer and initialisation) on the same device:

* single run — source 000's DeeperCNN (conv 64/128/256 with BatchNorm, no shortcuts: the network of
  the study rows) on Fashion-MNIST, batch 64, Adam: one training epoch of reglab's step (a pack of
  one: stacked state, batched optimizer, CUDA graph, bf16 autocast) vs one epoch of the reference
  loop (median of the timed epochs, after an untimed warm-up epoch each); with bf16, the same again
  in float32 (a pack of one launches few enough kernels that bf16's casts can cost more than they
  save); and the same for reglab's default DeeperCNN, whose 1×1 projection shortcuts add three
  convolutions and three batch norms (the network of the H200 single-run row in docs/performance.md);
* study — the seed000 arms (4 arms × 5 seeds × 10 epochs, batch 64) run by `reglab` with
  ``--pack auto`` vs the reference loop run after run. The reference trains `--reference-runs`
  runs (the first seed of the first arms) and its wall time is scaled to all runs — printed as such;
* study, compiled — the same study with ``train.compile`` on every run, as one pack, against the same
  reference, in a fresh process with torch.compile's caches off (so compiling is paid, as on a user's
  first run; the epoch split shows the steady pace), when the compiled pack (below) stepped faster than
  the eager one (always in a dry run);
* accuracy — final test accuracy per arm, mean ± std over seeds (reglab) and over the reference runs;
* loss surface — the 51×51 surface of `bench.analysis` (784-1000-10 MLP, 1000 samples);
* pack scaling — seconds per training step of a pack of K of the study's runs (K = 1, 5, 10, 20; after
  warm-up and CUDA-graph capture), in bf16 autocast and in float32, against one run trained alone by
  `Trainer` (the solo step, float32): how far a step's cost is from growing with K; the largest
  pack also in the other layout (``train.channels_last`` off, NCHW grouped convolutions; on, with
  ``--nchw``); whether cuDNN's autotuner pays is `bench.layout`'s question (it needs a process per
  setting: torch keeps each shape's first algorithm choice for the process); and the largest pack
  with ``train.compile`` (inductor; ``aot_eager``, tracing only, in a dry run on CPU);
* pack forms — the largest pack's forward and backward computed four ways (`bench.pack_forms`):
  vmap (grouped convolutions, as the pack trains), a loop of solo calls over the runs' rows, that
  loop with one CUDA stream per run, and vmap with each convolution as im2col and one batched matrix
  product; each captured as a CUDA graph;
* step profile — the ops of one eager step of the largest pack with the most device time
  (`torch.profiler`), so that a slow step says which kernels make it slow;
* epoch profile — one epoch of the single run under `torch.profiler`: its wall time against the
  device's busy time and the host ops that take the most time, so that an epoch longer than its
  steps says where the rest goes.

Without Fashion-MNIST files the benchmark uses generated stand-in data of the same shape (60k/10k
1×28×28 images, 10 classes: a noisy class template per image) and prints a note; timings hold,
accuracies are not Fashion-MNIST's. The table is also written to ``$OUT/gpu_bench.txt`` (and the
numbers to ``$OUT/gpu_bench.json``) when ``OUT`` is set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from bench import record
from bench.pack_forms import FORMS, time_forms
from bench.reference import reference_epoch, reference_run, synchronize
from reglab.config import RunConfig
from reglab.data import TensorData, load_dataset
from reglab.data.registry import Found, register_dataset
from reglab.errors import one_line
from reglab.models import build_model
from reglab.study import load_spec, make_executor, run_study
from reglab.study.packed import solo_step_seconds
from reglab.study.spec import StudySpec
from reglab.theory import filter_normalized_direction, loss_surface
from reglab.train import Trainer, packed
from reglab.train.packed import PackedTrainer

STANDIN = "fashion-standin"

FULL = {"samples": None, "test_samples": None, "arms": 4, "seeds": 5, "epochs": 10, "reference_runs": 2,
        "single_epochs": 2, "points": 51, "surface_samples": 1000, "cnn": {}, "mlp_width": 1000,
        "standin": {}, "pack_sizes": [1, 5, 10, 20]}
DRY = {"samples": 256, "test_samples": 128, "arms": 4, "seeds": 2, "epochs": 1, "reference_runs": 1,
       "single_epochs": 1, "points": 5, "surface_samples": 100, "cnn": {"channels": [4, 8, 8], "fc_widths": [16]},
       "mlp_width": 32, "standin": {"n_train": 256, "n_test": 128}, "pack_sizes": [1, 2, 4]}


@register_dataset(STANDIN, description="generated stand-in of Fashion-MNIST's shape for benchmarks: 60k/10k "
                  "1×28×28, 10 classes (a noisy class template per image)",
                  probe=lambda data_dir: Found("generated", "60000 train / 10000 test"))
def load_standin(*, data_dir: Path | None, download: bool, n_train: int = 60000, n_test: int = 10000) -> TensorData:
    generator = torch.Generator().manual_seed(0)
    templates = F.avg_pool2d(torch.rand(10, 1, 28, 28, generator=generator), 5, stride=1, padding=2)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=generator)
        x = templates[y] + 0.35 * torch.randn(n, 1, 28, 28, generator=generator)
        return (x.clamp(0, 1) * 255).round() / 255, y

    return TensorData(STANDIN, *split(n_train), *split(n_test), num_classes=10)


def data_section(data_dir: Path | None, standin: dict) -> tuple[dict, str]:
    """The `data` config: Fashion-MNIST from `data_dir` when its files are there, else the stand-in
    (generated with the `standin` options)."""
    if data_dir is not None:
        try:
            load_dataset(RunConfig.from_dict({"data": {"name": "fashion-mnist", "data_dir": str(data_dir)}}).data)
            return {"name": "fashion-mnist", "data_dir": str(data_dir)}, f"Fashion-MNIST from {data_dir}"
        except Exception as err:  # missing or unreadable files: benchmark on the stand-in
            reason = str(err).splitlines()[0][:120]
            return {"name": STANDIN, "options": standin}, f"stand-in data (no Fashion-MNIST in {data_dir}: {reason})"
    return {"name": STANDIN, "options": standin}, "stand-in data (no Fashion-MNIST folder)"


def subset(data: dict, size: dict) -> dict:
    return {**data, **{k: v for k, v in (("train_subset", size["samples"]), ("test_subset", size["test_samples"]))
                       if v is not None}}


def seed000_model(size: dict) -> dict:
    """Source 000's DeeperCNN (conv 64/128/256 with BatchNorm and max-pooling, no shortcuts, FC 512), the
    network of the study rows, as a model section; `size["cnn"]` shrinks it for a dry run."""
    model = load_spec("seed000").to_dict()["base"]["model"]
    return {**model, "options": {**model.get("options", {}), **size["cnn"]}}


def single_config(data: dict, size: dict, device: torch.device, amp: bool, speed: dict, *, model: dict) -> RunConfig:
    """The single-run rows' run: `model` on `data`, Adam, batch 64. `speed`: ``train.channels_last`` and
    ``train.cudnn_benchmark`` (``--nchw``, ``--cudnn-heuristics``)."""
    return RunConfig.from_dict({
        "seed": 0, "data": subset(data, size), "model": model,
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": size["single_epochs"] + 1, "batch_size": 64, "device": str(device),
                  "eval_train_samples": 0, "amp": amp, **speed},
    })


def bench_single(cfg: RunConfig, device: torch.device) -> dict:
    """One epoch of `cfg` as reglab trains it (a pack of one) against one of the plain loop, alternating.
    The reference's model is built as a user builds it (`build_model`, NCHW, seeded; not `Trainer`'s,
    which is channels-last on CUDA by default)."""
    pack = PackedTrainer([Trainer(cfg)])
    cpu = load_dataset(cfg.data, device="cpu")
    torch.manual_seed(cfg.seed)  # the same initial weights as reglab's run
    reference_model = build_model(cfg.model, input_shape=cpu.input_shape, num_outputs=cpu.num_outputs,
                                  reg=cfg.regularize).to(device)
    kwargs = {"batch_size": 64, "lr": 1e-3, "device": device, "seed": 1}
    pack._train_epoch()  # warm-up: graph capture, allocator
    reference_epoch(reference_model, cpu.x_train, cpu.y_train, **kwargs)
    ours, ref = [], []
    for _ in range(cfg.train.epochs - 1):
        ref.append(reference_epoch(reference_model, cpu.x_train, cpu.y_train, **kwargs)[0])
        synchronize(device)
        start = time.perf_counter()
        pack._train_epoch()
        synchronize(device)
        ours.append(time.perf_counter() - start)
    return {"model": cfg.model.model_dump(mode="json"), "samples": cpu.x_train.shape[0],
            "reference_s": statistics.median(ref), "reglab_s": statistics.median(ours),
            "graph": pack.graph is not None, "graph_note": pack.graph_note,
            "steps_only_s": pack.time_step(20) * pack.trainers[0].steps_per_epoch}  # the epoch's steps, no overhead


def epoch_profile(cfg: RunConfig, device: torch.device) -> dict:
    """`profile_epoch` of a fresh pack of one of `cfg`, after a warm-up epoch."""
    pack = PackedTrainer([Trainer(cfg)])
    pack._train_epoch()
    return profile_epoch(pack, device)


def study_spec(data: dict, size: dict, device: torch.device, amp: bool, speed: dict) -> StudySpec:
    spec = load_spec("seed000", seeds=size["seeds"], epochs=size["epochs"]).to_dict()
    spec["arms"] = dict(list(spec["arms"].items())[:size["arms"]])
    base = spec["base"]
    spec["base"] = {**base, "model": seed000_model(size), "data": {**base.get("data", {}), **subset(data, size)},
                    "train": {**base.get("train", {}), "batch_size": 64, "eval_train_samples": 0, "amp": amp,
                              **speed, "device": str(device), "checkpoint_every": 0}}
    return StudySpec.from_dict(spec)


def timed_study(spec: StudySpec, device: torch.device, pack: str | int = "auto") -> dict:
    """`spec` run by `run_study` (packed executor, one worker) in a scratch directory: its wall time, the
    training and evaluation seconds summed over its epoch records (a packed run's ``train_seconds`` is
    its share of the pack's steps, so the sums are the study's totals) and by epoch, failures, and
    each arm's final test accuracies."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_study(spec, Path(out), progress=False,
                           executor=make_executor("packed", workers=1, device=str(device), pack=pack))
        seconds = time.perf_counter() - start
    runs, epochs = result.runs, result.epochs
    train_s, eval_s = (float(epochs[k].sum()) if k in epochs else math.nan for k in ("train_seconds", "eval_seconds"))
    return {"reglab_s": seconds, "failed": int((runs["status"] != "done").sum()), "train_s": train_s,
            "eval_s": eval_s, "train_epoch_s": epoch_seconds(epochs),
            "accuracy": {arm: runs[runs["arm"] == arm]["final_test_acc"].tolist() for arm in spec.arms}}


def bench_study(spec: StudySpec, size: dict, device: torch.device) -> dict:
    """`timed_study` of `spec` (``--pack auto``) against the reference loop run after run on the first
    `size["reference_runs"]` arms' first seeds, scaled to every run."""
    configs = {arm: [spec.arm_config(arm, seed) for seed in spec.seed_list] for arm in spec.arms}
    ours = timed_study(spec, device)
    chosen = [(arm, cfgs[0].override({"train.amp": False})) for arm, cfgs in configs.items()]
    chosen = chosen[:size["reference_runs"]]
    cpu = load_dataset(chosen[0][1].data, device="cpu")
    reference: dict[str, list[float]] = {}
    start = time.perf_counter()
    for arm, cfg in chosen:
        reference.setdefault(arm, []).append(reference_run(cfg, cpu, device)[1])
    measured = time.perf_counter() - start
    total = sum(len(c) for c in configs.values())
    return {**ours, "runs": total, "reference_measured_s": measured, "reference_runs": len(chosen),
            "reference_s": measured * total / len(chosen), "reference_accuracy": reference}


def epoch_seconds(epochs) -> list[float]:
    """A study's training seconds by epoch, summed over its runs (a packed run's share of its pack's
    time): the first epoch pays for CUDA-graph capture and compiling, the others show the steady pace."""
    return [float(s) for s in epochs.groupby("epoch")["train_seconds"].sum().sort_index()]


def epoch_split(seconds: list[float]) -> str:
    rest = seconds[1:]
    return f"first epoch {seconds[0]:.1f} s" + (f", later epochs {statistics.mean(rest):.1f} s each" if rest else "")


def cold_compiled_study(job: dict) -> dict:
    """`bench_compiled_study` of `job` (``data``, ``dry_run``, ``device``, ``amp``, ``speed``) in a fresh
    process with torch.compile's caches off (``TORCHINDUCTOR_FORCE_DISABLE_CACHES``): the compiled study
    as a user's first ``reglab compare`` with ``train.compile`` runs it, compiling included."""
    env = {**os.environ, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
    done = subprocess.run([sys.executable, "-m", "bench.gpu", "--compiled-study", json.dumps(job)], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"compiled study: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.splitlines()[-1])


def bench_compiled_study(spec: StudySpec, device: torch.device) -> dict:
    """`timed_study` of `spec` with ``train.compile`` on every run (its packs' forward and backward
    compiled by inductor), to set against the reference measured by `bench_study`. All runs train as
    one pack (``--pack N``): ``--pack auto`` would time each kind of run alone, and compiling each of
    those costs more than this row measures."""
    return timed_study(spec.override({"train.compile": True}), device, pack=len(spec.arms) * len(spec.seed_list))


def bench_surface(data: dict, size: dict, device: torch.device) -> dict:
    cfg = RunConfig.from_dict({
        "data": {**data, "train_subset": size["surface_samples"]},
        "model": {"name": "mlp", "options": {"widths": [size["mlp_width"]]}},
        "train": {"epochs": 1, "device": str(device), "eval_train_samples": 0},
    })
    trainer = Trainer(cfg)
    model, x, y = trainer.model.eval(), trainer.data.x_train, trainer.data.y_train
    generator = torch.Generator(device=device).manual_seed(0)
    d1, d2 = (filter_normalized_direction(model, generator) for _ in range(2))
    loss_surface(model, d1, d2, F.cross_entropy, x, y, torch.linspace(-1, 1, 3), torch.linspace(-1, 1, 3))
    grid = torch.linspace(-1.0, 1.0, size["points"])
    synchronize(device)
    start = time.perf_counter()
    losses = loss_surface(model, d1, d2, F.cross_entropy, x, y, grid, grid)
    synchronize(device)
    return {"points": size["points"], "seconds": time.perf_counter() - start, "finite": bool(losses.isfinite().all())}


def pack_configs(spec: StudySpec, size: dict) -> list[RunConfig]:
    """The study's runs, arms × seeds in turn (a pack of K takes the first K), for the largest pack size."""
    return [spec.arm_config(arm, seed) for seed in range(max(size["pack_sizes"])) for arm in spec.arms]


def bench_pack_scaling(spec: StudySpec, size: dict, device: torch.device) -> dict:
    """Seconds per step of packs of the study's runs (arms × seeds in turn) at each size, bf16 and float32."""
    configs = pack_configs(spec, size)
    rows, precisions = {}, ([True, False] if device.type == "cuda" else [False])  # amp: bf16 autocast or not
    for amp in precisions:
        chosen = [c.override({"train.amp": amp}) for c in configs]
        for k in size["pack_sizes"]:
            pack = PackedTrainer([Trainer(c) for c in chosen[:k]])
            rows[f"{'bf16' if amp else 'float32'} K={k}"] = pack.time_step(10)
    k, other = max(size["pack_sizes"]), not configs[0].train.channels_last
    for amp in precisions:  # the other layout: new shapes, so the process's cuDNN setting still chooses
        pack = PackedTrainer([Trainer(c.override({"train.amp": amp, "train.channels_last": other}))
                              for c in configs[:k]])
        rows[f"{'bf16' if amp else 'float32'} K={k} {'channels_last' if other else 'NCHW'}"] = pack.time_step(10)
    solo = solo_step_seconds(configs[0].override({"train.amp": False}), 10)
    return {"step_s": rows, "solo_step_s": solo}


def bench_compiled(configs: list[RunConfig], device: torch.device) -> dict:
    """The largest pack with ``train.compile`` (`PackedTrainer`'s compiled forward and backward), in the
    study's precision: its step time, and the seconds the whole measurement took (compiling included).
    A dry run on CPU compiles with ``aot_eager`` (torch.compile's tracing, without code generation)."""
    name = f"{'bf16' if configs[0].train.amp else 'float32'} K={len(configs)} compiled"
    options = packed.COMPILE if device.type == "cuda" else {"backend": "aot_eager"}
    start = time.perf_counter()
    try:
        with mock.patch.object(packed, "COMPILE", options):
            pack = PackedTrainer([Trainer(c.override({"train.compile": True})) for c in configs], compiled=True)
            seconds = pack.time_step(10)
    except Exception as err:  # e.g. no compiler for this device: the other rows stand
        return {"step_s": {}, "error": one_line(err, first_line=True)}
    return {"step_s": {name: seconds}, "backend": str(options["backend"]), "total_s": time.perf_counter() - start}


def bench_forms(spec: StudySpec, size: dict, device: torch.device) -> dict[str, dict[str, float | str]]:
    """The largest pack's forward and backward by each form of `bench.pack_forms`, bf16 and float32.
    Run last: a form whose CUDA-graph capture fails must not cost the other rows."""
    k = max(size["pack_sizes"])
    configs = pack_configs(spec, size)[:k]
    return {f"{'bf16' if amp else 'float32'} K={k}": time_forms(PackedTrainer([Trainer(c.override({"train.amp": amp}))
                                                                               for c in configs]))
            for amp in ([True, False] if device.type == "cuda" else [False])}


def profile_step(configs: list[RunConfig], device: torch.device, steps: int = 5, top: int = 15) -> list[dict]:
    """Where a packed step's time goes: the `top` ops by device time (CPU time off CUDA) per step, from
    `torch.profiler` over eager steps of a pack of `configs` (a captured graph runs the same kernels)."""
    from torch.profiler import ProfilerActivity, profile

    pack = PackedTrainer([Trainer(c) for c in configs], cuda_graphs=False)
    pack.time_step(2)  # warm-up: allocator, cuDNN's algorithm choices
    on_cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])) as prof:
        pack.time_step(steps)  # 2 warm-up steps + `steps`, all inside the profile
    key = "self_device_time_total" if on_cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:top]
    n = steps + 2
    return [{"op": e.key, "ms_per_step": getattr(e, key) / 1e3 / n, "calls_per_step": e.count / n,
             "k": len(configs), "time": "device" if on_cuda else "cpu"} for e in events]


def profile_epoch(pack: PackedTrainer, device: torch.device, top: int = 8) -> dict:
    """Where one training epoch of `pack` goes (`torch.profiler`, host and, on CUDA, device): its wall
    time, the device's busy time, and the `top` host-side ops by their own time. An epoch much longer
    than its steps (`steps_only_s`) with an idle device is host-bound; these rows say on what."""
    from torch.profiler import ProfilerActivity, profile

    on_cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])) as prof:
        synchronize(device)
        start = time.perf_counter()
        pack._train_epoch()
        synchronize(device)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    host = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {"wall_s": wall,
            "device_busy_s": sum(e.self_device_time_total for e in events) / 1e6 if on_cuda else None,
            "host_ops": [{"op": e.key, "ms": e.self_cpu_time_total / 1e3, "calls": e.count} for e in host]}


def spread(values: list[float]) -> str:
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f} (n={len(values)})"


SINGLE_ROWS = {"single_float32": "  the same, reglab in float32", "single_residual": "  residual DeeperCNN, as run"}


def single_row(name: str, single: dict) -> str:
    return (f"{name:<44}"
            f"{single['reference_s']:>14.2f}{single['reglab_s']:>12.2f}"
            f"{single['reference_s'] / single['reglab_s']:>8.1f}x")


def profile_lines(epoch: dict) -> list[str]:
    busy = epoch["device_busy_s"]
    lines = [f"single run: one epoch under torch.profiler {epoch['wall_s']:.2f} s"
             + (f", device busy {busy:.2f} s" if busy is not None else "") + "; host time by op:"]
    return lines + [f"  {row['op'][:56]:<58}{row['ms']:>9.1f} ms{row['calls']:>8} calls" for row in epoch["host_ops"]]


def table(header: str, singles: dict[str, dict], study: dict, surface: dict, size: dict, scaling: dict,
          forms: dict[str, dict[str, float | str]]) -> str:
    """`singles`: single-run rows by name, the headline row (seed 000's network, as run) first."""
    single = singles["single"]
    lines = [header, "",
             f"{'benchmark':<44}{'reference':>14}{'reglab':>12}{'ratio':>9}",
             single_row(f"single run: s/epoch ({single['samples']} samples, batch 64)", single),
             *(single_row(SINGLE_ROWS[name], row) for name, row in singles.items() if name != "single"),
             f"{'study: wall s (' + str(study['runs']) + ' runs × ' + str(size['epochs']) + ' epochs)':<44}"
             f"{study['reference_s']:>13.1f}*{study['reglab_s']:>12.1f}"
             f"{study['reference_s'] / study['reglab_s']:>8.1f}x",
             *([f"{'  the same, train.compile':<44}{study['reference_s']:>13.1f}*{study['compiled']['reglab_s']:>12.1f}"
                f"{study['reference_s'] / study['compiled']['reglab_s']:>8.1f}x"] if "compiled" in study else []),
             f"{'loss surface ' + str(surface['points']) + '×' + str(surface['points']) + ': s':<44}"
             f"{'':>14}{surface['seconds']:>12.2f}",
             "",
             f"* reference measured on {study['reference_runs']} run(s) ({study['reference_measured_s']:.1f} s) and "
             f"scaled to {study['runs']}",
             "single run: seed 000's DeeperCNN (no shortcuts), Adam; residual: reglab's default DeeperCNN "
             "(1×1 projection shortcuts)",
             f"single run: CUDA graph {'captured' if single['graph'] else 'not used'}"
             + (f" ({single['graph_note']})" if single["graph_note"] else ""),
             f"single run: the epoch's steps alone (no per-epoch work) {single['steps_only_s']:.2f} s",
             *profile_lines(single["epoch_profile"]),
             f"study: {study['failed']} failed run(s); of reglab's {study['reglab_s']:.1f} s, training "
             f"{study['train_s']:.1f} s, evaluation {study['eval_s']:.1f} s, the rest "
             f"{study['reglab_s'] - study['train_s'] - study['eval_s']:.1f} s (building runs, checkpoints, records); "
             f"training: {epoch_split(study['train_epoch_s'])}",
             *([f"study, train.compile: {study['compiled']['failed']} failed run(s); training "
                f"{study['compiled']['train_s']:.1f} s ({epoch_split(study['compiled']['train_epoch_s'])}), "
                f"evaluation {study['compiled']['eval_s']:.1f} s"]
               if "compiled" in study else []),
             "", "final test accuracy (mean ± std over seeds):"]
    for arm, values in study["accuracy"].items():
        reference = spread(study["reference_accuracy"].get(arm, []))
        compiled = f"  compiled {spread(study['compiled']['accuracy'][arm])}" if "compiled" in study else ""
        lines.append(f"  {arm:<34} reglab {spread(values):<28} reference {reference}{compiled}")
    solo = scaling["solo_step_s"]
    lines += ["", f"pack scaling: ms per step (study runs, batch 64); one run alone (Trainer, float32): "
                  f"{1e3 * solo:.2f} ms/step"]
    for name, seconds in scaling["step_s"].items():
        k = int(name.split("K=")[1].split()[0])
        lines.append(f"  {name:<46}{1e3 * seconds:>9.2f} ms/step{1e3 * seconds / k:>9.2f} ms per run-step"
                     f"{solo * k / seconds:>8.1f}x the runs alone")
    compiled = scaling["compiled"]
    lines.append(f"  compiled (train.compile): failed: {compiled['error']}" if "error" in compiled else
                 f"  compiled: torch.compile backend {compiled['backend']}, {compiled['total_s']:.1f} s for the row, "
                 "compiling included")
    lines += ["", "forward + backward of the largest pack, by form (bench/pack_forms.py; ms; a graph replay on CUDA):",
              f"  {'':<20}" + "".join(f"{form:>14}" for form in FORMS)]
    for name, times in forms.items():
        cells = [times.get(form) for form in FORMS]  # seconds, an error's line, or None: not run here
        lines.append(f"  {name:<20}" + "".join(f"{1e3 * t:>14.2f}" if isinstance(t, float)
                                               else f"{'failed' if t else '—':>14}" for t in cells))
        lines += [f"    {form}: {t}" for form, t in times.items() if isinstance(t, str)]
    if scaling["profile"]:
        first = scaling["profile"][0]
        lines += ["", f"one eager step of a pack of {first['k']}, op by op ({first['time']} time, torch.profiler):"]
        lines += [f"  {row['op'][:56]:<58}{row['ms_per_step']:>8.3f} ms/step{row['calls_per_step']:>7.1f} calls"
                  for row in scaling["profile"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: exercise every code path")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--data-dir", type=Path, default=Path(".gpudata/fashion-mnist"))
    parser.add_argument("--no-amp", action="store_true", help="reglab in float32 instead of bf16 autocast")
    parser.add_argument("--nchw", action="store_true", help="train.channels_last = false for every reglab row")
    parser.add_argument("--cudnn-heuristics", action="store_true",
                        help="train.cudnn_benchmark = false for every reglab row (the reference never autotunes)")
    parser.add_argument("--compiled-study", metavar="JSON", help=argparse.SUPPRESS)  # `cold_compiled_study`'s child
    args = parser.parse_args()
    if args.compiled_study:
        job = json.loads(args.compiled_study)
        device, size = torch.device(job["device"]), DRY if job["dry_run"] else FULL
        spec = study_spec(job["data"], size, device, job["amp"], job["speed"])
        print(json.dumps(bench_compiled_study(spec, device)))
        return
    speed = {"channels_last": not args.nchw, "cudnn_benchmark": not args.cudnn_heuristics}
    size = DRY if args.dry_run else FULL
    device = torch.device(args.device or ("cpu" if args.dry_run else "cuda"))
    amp = not args.no_amp and device.type == "cuda"
    data, note = data_section(args.data_dir if args.data_dir.exists() else None, size["standin"])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    header = (f"reglab GPU benchmark{' (dry run: tiny sizes)' if args.dry_run else ''} — device {device} ({where}), "
              f"torch {torch.__version__}, reglab {'bf16 autocast' if amp else 'float32'}, reference float32"
              f", reglab {'NCHW' if args.nchw else 'channels-last'}"
              f"{' with cuDNN heuristics' if args.cudnn_heuristics else ' with cuDNN autotuner'}\n"
              f"data: {note}")
    print(header, flush=True)
    plain, residual = seed000_model(size), {"name": "deeper_cnn", "options": size["cnn"]}
    single_cfgs = {"single": single_config(data, size, device, amp, speed, model=plain)}
    if amp or args.dry_run:
        single_cfgs["single_float32"] = single_config(data, size, device, False, speed, model=plain)
    single_cfgs["single_residual"] = single_config(data, size, device, amp, speed, model=residual)
    singles = {name: bench_single(cfg, device) for name, cfg in single_cfgs.items()}
    print(f"single runs done: {singles}", flush=True)
    scaling = bench_pack_scaling(study_spec(data, size, device, amp, speed), size, device)
    print(f"pack scaling done: {scaling}", flush=True)
    study = bench_study(study_spec(data, size, device, amp, speed), size, device)
    print(f"study done: {study['reglab_s']:.1f} s reglab, {study['reference_measured_s']:.1f} s reference", flush=True)
    surface = bench_surface(data, size, device)
    compiled = bench_compiled(pack_configs(study_spec(data, size, device, amp, speed), size)[:max(size["pack_sizes"])],
                              device)  # after the study: compiling may take long
    scaling["step_s"] |= compiled.pop("step_s")
    scaling["compiled"] = compiled
    print(f"compiled pack done: {compiled}", flush=True)
    k = max(size["pack_sizes"])
    eager_s = scaling["step_s"][f"{'bf16' if amp else 'float32'} K={k}"]
    faster = compiled.get("total_s") is not None and scaling["step_s"].get(f"{'bf16' if amp else 'float32'} "
                                                                           f"K={k} compiled", math.inf) < eager_s
    if faster or args.dry_run:  # the study with the compiled step, from a cold start, against the same reference
        study["compiled"] = cold_compiled_study({"data": data, "dry_run": args.dry_run, "device": str(device),
                                                 "amp": amp, "speed": speed})
        print(f"compiled study done: {study['compiled']['reglab_s']:.1f} s", flush=True)
    try:
        forms = bench_forms(study_spec(data, size, device, amp, speed), size, device)
    except Exception as err:  # e.g. CUDA refusing work after a failed capture: keep the rest of the table
        forms = {"all forms": {"vmap": one_line(err, first_line=True)}}
    print(f"pack forms done: {forms}", flush=True)
    # last: a profiler session can leave the process slower for eager code (kineto's hooks), and on the
    # H200 the reference epochs timed after one took 23–28% longer than the same epochs before it
    singles["single"]["epoch_profile"] = epoch_profile(single_cfgs["single"], device)
    scaling["profile"] = profile_step([c.override({"train.amp": amp}) for c in
                                       pack_configs(study_spec(data, size, device, amp, speed), size)
                                       [:max(size["pack_sizes"])]], device)
    text = table(header, singles, study, surface, size, scaling, forms)
    print()
    print(text)
    if os.environ.get("OUT"):
        out = Path(os.environ["OUT"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_bench.txt").write_text(text + "\n")
        (out / "gpu_bench.json").write_text(json.dumps({**singles,
                                                        "study": study, "surface": surface,
                                                        "scaling": scaling, "forms_s": forms, "header": header,
                                                        **record([str(device)])}, indent=1, default=str))


if __name__ == "__main__":
    main()
