"""Fixtures shared by the test modules."""

import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

TINY_STUDY = """
name = "tiny"
seeds = 2
[base]
data = { name = "mnist1d", train_subset = 128, test_subset = 128 }
model.options.widths = [8]
train = { epochs = 1, batch_size = 64, device = "cpu", eval_train_samples = 64 }
[arms.base]
[arms.l2]
regularize.l2 = 0.001
"""
"""A study TOML of two arms × two seeds that trains in seconds."""


@pytest.fixture(scope="session", autouse=True)
def _newcomers_data_folders(tmp_path_factory):
    """Every test sees the data a newcomer's machine has, as `.ci/run` runs the suite: a cache of its own
    (MNIST-1D generated there once per session), no system data folder, no REGLAB_DATA. A test that
    needs a system folder sets one up itself (test_data.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        patch.setenv("REGLAB_SYSTEM_DATA", "0")
        patch.delenv("REGLAB_DATA", raising=False)
        yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids oversubscribing the shared CPU (10× faster here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fake_cifar10(root, per_file: int = 64) -> None:
    """A CIFAR-10-format stand-in (random pixels and labels) for tests only: 5 training files + test."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = torch.randint(0, 10, (per_file, 1), generator=generator, dtype=torch.uint8)
        pixels = torch.randint(0, 256, (per_file, 3072), generator=generator, dtype=torch.uint8)
        (folder / name).write_bytes(torch.cat([labels, pixels], 1).numpy().tobytes())


def run_quick_preset(name: str, tmp_path, **settings) -> dict:
    """A reproduction's --quick run into tmp_path/name: its files exist and results.json is its strict JSON."""
    import json

    from reglab.reproduce import Settings, run

    data = run(name, Settings(quick=True, **settings), tmp_path / name)
    files = {p.name for p in (tmp_path / name).iterdir()}
    assert {"results.json", "report.html"} <= files and any(f.endswith(".png") for f in files)
    assert json.loads((tmp_path / name / "results.json").read_text()) == json.loads(json.dumps(data))
    assert data["quick"] is True and data["claims"]
    return data


MLP_RUN = {
    "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 128},
    "model": {"name": "mlp", "options": {"widths": [64, 64]}},
    "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05},
    "train": {"epochs": 2, "batch_size": 50, "device": "cpu", "eval_train_samples": 64},
}
"""An MLP 64-64 on 256 MNIST-1D samples, two epochs: the run the packing and metrics tests vary."""


def mlp_config(seed: int = 0, **overrides):
    """`MLP_RUN` with `seed` and dotted `overrides` (`RunConfig.override`)."""
    from reglab.config import RunConfig

    return RunConfig.from_dict({"seed": seed, **MLP_RUN}).override(overrides)


class OpCounter(TorchDispatchMode):
    """The aten ops dispatched inside the block, by name (`ops`)."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def pack_step_ops(configs) -> list[str]:
    """Ops dispatched by one packed step of the runs of `configs` (after one step of warm-up)."""
    from reglab.train.loop import Trainer
    from reglab.train.packed import PackedTrainer

    k = len(configs)
    pack = PackedTrainer([Trainer(c) for c in configs])
    pack.module.train()
    pack.optimizer.set_lr_table(pack._lr_table(10))
    idx = torch.randint(0, 256, (k, 50))
    pack._step(idx)
    with OpCounter() as counter:
        pack._step(idx)
    return counter.ops


def assert_same_run(solo, packed, solo_epochs: list[dict], packed_epochs: list[dict]) -> None:
    """A packed run equals its solo run up to float rounding: its epochs' metrics and its weights (1e-5)."""
    for a, b in zip(solo_epochs, packed_epochs, strict=True):
        for key in ("train_loss", "train_acc", "grad_norm", "test_loss", "test_acc", "step", "lr", "weight_norm"):
            assert (key in a) == (key in b), key  # train_acc: none where the inputs are mixed
            assert b.get(key) == pytest.approx(a.get(key), abs=1e-5), key
    for (name, a), (_, b) in zip(solo.model.state_dict().items(), packed.model.state_dict().items(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0, msg=name)


class FailEverything:
    """An executor whose every run fails (an application error), for what follows a failed run."""

    def execute(self, tasks, events):
        for task in tasks:
            events.started(task)
            events.failed(task, "RuntimeError: boom")


class Recorder:
    """`RunEvents` that keep what an executor reported."""

    def __init__(self):
        self.notes, self.results, self.errors, self.kept = [], {}, {}, {}

    def started(self, task):
        pass

    def epoch(self, task, metrics):
        pass

    def finished(self, task, result):
        self.results[task.run_id] = result

    def failed(self, task, error):
        self.errors[task.run_id] = error

    def note(self, text):
        self.notes.append(text)

    def recall(self, key):
        return self.kept.get(key)

    def remember(self, key, value):
        self.kept[key] = value


def run_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """`reglab ARGV` through the real entry point (its error handling and exit codes): (code, stdout, stderr)."""
    from reglab.cli.app import main

    monkeypatch.setattr(sys, "argv", ["reglab", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def fake_training_clock(monkeypatch, train_seconds: float = 3.0, eval_seconds: float = 5.0) -> None:
    """A clock for `reglab.train.loop` that only training (`train_seconds` an epoch) and each evaluation
    pass (`eval_seconds`) advance."""
    from types import SimpleNamespace

    from reglab.train import Trainer, loop

    now = [0.0]
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    train_epoch, evaluate = Trainer._train_epoch, Trainer.evaluate

    def slow_train_epoch(self):
        now[0] += train_seconds
        return train_epoch(self)

    def slow_evaluate(self, *args, **kwargs):
        now[0] += eval_seconds
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", slow_train_epoch)
    monkeypatch.setattr(Trainer, "evaluate", slow_evaluate)
