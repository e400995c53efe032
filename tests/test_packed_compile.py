"""``train.compile`` in a pack: the compiled forward trains every run as the eager pack does.

The default tests compile with AOTAutograd's eager backend (``aot_eager``): the graph capture, the
vmapped network, the pack layers' custom ops and the BatchNorm buffer updates go through
`torch.compile` as on a GPU, without needing a C++ compiler on the machine; a `slow` test compiles
with inductor (CPU code generation), as the GPU compiles with its own code generator.
"""

import shutil

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

from reglab.config import RunConfig
from reglab.train import packed
from reglab.train.loop import Trainer
from reglab.train.packed import PackedTrainer, packing_blocker

BASE = {
    "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 128},
    "model": {"name": "mlp", "options": {"widths": [32, 16]}, "norm": "batch"},
    "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.05},
    "regularize": {"dropout": {"p": 0.2}},
    "train": {"epochs": 2, "batch_size": 60, "device": "cpu", "eval_train_samples": 64, "compile": True},
}


def config(seed: int, **overrides) -> RunConfig:
    return RunConfig.from_dict({"seed": seed, **BASE}).override(overrides)


def train_both(configs: list[RunConfig]) -> tuple[list, list]:
    """(eager pack's results, compiled pack's results) of `configs`, each pack from fresh trainers and
    the same global seed (so the same dropout masks: the compiled graph keeps torch's random ops)."""
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        trainers = [Trainer(c) for c in configs]
        torch.manual_seed(1)
        results.append((PackedTrainer(trainers, compiled=compiled).fit(), trainers))
    return results[0], results[1]


def assert_same_training(eager, compiled, atol: float) -> None:
    (eager_results, eager_trainers), (compiled_results, compiled_trainers) = eager, compiled
    for a, b in zip(eager_results, compiled_results, strict=True):
        assert a.status == b.status
        for ea, eb in zip(a.epochs, b.epochs, strict=True):
            for key in ("train_loss", "grad_norm", "test_loss", "test_acc"):
                assert eb[key] == pytest.approx(ea[key], abs=atol, nan_ok=True), key
    for ta, tb in zip(eager_trainers, compiled_trainers, strict=True):
        for (name, a), (_, b) in zip(ta.model.state_dict().items(), tb.model.state_dict().items(), strict=True):
            torch.testing.assert_close(b, a, atol=atol, rtol=0, equal_nan=True, msg=name)  # weights, BN statistics


@pytest.fixture
def aot_eager(monkeypatch):
    """Compile with ``aot_eager``; yields its counter of compiled graphs."""
    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(packed, "COMPILE", {"backend": counter})
    torch._dynamo.reset()
    counters.clear()
    yield counter
    torch._dynamo.reset()


def test_compiled_runs_pack_like_any_other():
    assert packing_blocker(config(0)) is None  # on CUDA the pack compiles; elsewhere it trains eagerly
    assert PackedTrainer([Trainer(config(0))]).compiled is None


def test_a_compiled_pack_trains_as_the_eager_pack_through_a_divergence_and_a_pack_of_one(aot_eager):
    """Three runs, one diverging in its first epoch: the compiled step is traced again for the pack of
    two, and a pack of one (its own code path, without vmap) is traced for the last run alone."""
    configs = [config(0), config(1, **{"optim.name": "sgd", "optim.lr": 1e6}), config(2)]
    configs = [c.override({"train.epochs": 3}) for c in configs]
    eager, compiled = train_both(configs)
    assert [r.status for r in compiled[0]] == ["done", "diverged", "done"]
    assert compiled[0][1].diverged_epoch < 3
    assert_same_training(eager, compiled, atol=1e-6)
    alone_eager, alone_compiled = train_both([config(3, **{"regularize.dropout.p": 0.0})])
    assert_same_training(alone_eager, alone_compiled, atol=1e-6)
    assert aot_eager.frame_count == 3  # K = 3, K = 2 and the pack of one; each epoch's last,
    # partial batch (256 = 4 × 60 + 16) runs eagerly: compiling its shape would cost more than it saves
    assert not counters["graph_break"]  # each forward is one whole graph


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="inductor needs a C++ compiler on CPU")
def test_an_inductor_compiled_pack_trains_as_the_eager_pack():
    """Momentum SGD: Adam would turn the rounding noise of a gradient that is zero in exact arithmetic
    (a Linear bias before BatchNorm), which inductor's fused kernels round differently, into ±lr steps."""
    torch._dynamo.reset()
    sgd = {"optim.name": "momentum", "optim.lr": 0.05}
    eager, compiled = train_both([config(0, **sgd), config(1, **(sgd | {"optim.name": "nesterov"}))])
    assert_same_training(eager, compiled, atol=1e-5)
