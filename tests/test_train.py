"""The shared trainer: seed determinism, checkpoint resume, divergence, step budget, full batch.

Tiny runs on CPU: mnist1d, a one-hidden-layer MLP of width 16, 256 training samples.
"""

import json

import pytest
import torch

import reglab
from reglab.config import ConfigError, RunConfig
from reglab.theory.training import build_trainer
from reglab.train import Trainer, train_run
from reglab.train.losses import make_criterion
from reglab.train.rundir import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides) -> RunConfig:
    base = {
        "seed": 0,
        "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
        "model": {"name": "mlp", "options": {"widths": [16]}},
        "optim": {"name": "momentum", "lr": 0.05},
        "train": {"epochs": 3, "batch_size": 64, "device": "cpu", "eval_train_samples": 128},
    }
    return RunConfig.from_dict(base).override(overrides)


def _without_seconds(epochs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if not k.endswith("seconds")} for e in epochs]


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# stochastic pieces that must replay exactly: dropout masks, mixing partners and lam, EMA
STOCHASTIC = {"regularize.dropout.p": 0.2, "regularize.mixup": 0.4, "regularize.ema": 0.9}


def test_same_seed_same_metrics():
    a, b = train_run(tiny(**STOCHASTIC)), train_run(tiny(**STOCHASTIC))
    assert a.status == b.status == "done" and len(a.epochs) == 3
    assert _without_seconds(a.epochs) == _without_seconds(b.epochs)
    c = train_run(tiny(seed=1, **STOCHASTIC))
    assert _without_seconds(c.epochs) != _without_seconds(a.epochs)


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    straight = train_run(tiny(**STOCHASTIC), run_dir=tmp_path / "a")
    first = train_run(tiny(**{**STOCHASTIC, "train.epochs": 1}), run_dir=tmp_path / "b")
    assert len(first.epochs) == 1
    resumed = train_run(tiny(**STOCHASTIC), run_dir=tmp_path / "b", extend=True)  # a larger budget
    assert _without_seconds(resumed.epochs) == _without_seconds(straight.epochs)
    assert _without_seconds([resumed.final]) == _without_seconds([straight.final])
    weights_a, weights_b = (load_checkpoint(tmp_path / d / "model.pt") for d in "ab")
    assert _equal_states(weights_a, weights_b)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_an_extended_cosine_run_takes_its_first_new_step_at_the_new_horizons_rate(tmp_path):
    """Extending 1 → 3 epochs moves the cosine horizon: step 4 (of 12) runs at lr·½(1 + cos(π·4/12)),
    not at the rate the 1-epoch checkpoint stored (its horizon's end, 0); the packed path agrees."""
    import math

    from reglab.train.loop import train_run as run

    cosine = {"optim.schedule.name": "cosine", "train.epochs": 1}
    run(tiny(**cosine), run_dir=tmp_path / "solo")
    run(tiny(**cosine), run_dir=tmp_path / "packed", pack_of_one=True)
    longer = {**cosine, "train.epochs": 3}
    solo = run(tiny(**longer), run_dir=tmp_path / "solo", extend=True)
    packed = run(tiny(**longer), run_dir=tmp_path / "packed", extend=True, pack_of_one=True)
    assert solo.epochs[1]["lr"] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 4 / 12)), rel=1e-12)
    for a, b in zip(solo.epochs, packed.epochs, strict=True):
        for key in ("lr", "train_loss", "test_loss"):
            assert b[key] == pytest.approx(a[key], abs=1e-5), key


def test_divergence_is_marked(tmp_path):
    result = train_run(tiny(**{"optim.name": "sgd", "optim.lr": 1e8, "train.loss": "mse", "train.epochs": 5}),
                       run_dir=tmp_path)
    assert result.status == "diverged" and result.diverged_epoch == len(result.epochs) < 5
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == result.diverged_epoch
    assert record["train_loss"] is None or record["test_loss"] is None  # non-finite -> null
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and not (tmp_path / "model.pt").exists()


def test_max_steps_budget():
    result = train_run(tiny(**{"train.epochs": 10, "train.max_steps": 6}))  # 4 steps per epoch
    assert [e["step"] for e in result.epochs] == [4, 6] and result.status == "done"


def test_full_batch_is_gradient_descent():
    cfg = tiny(**{"optim.name": "sgd", "optim.lr": 0.5, "train.batch_size": 0, "train.epochs": 1})
    trainer = Trainer(cfg)
    model, data = trainer.model, trainer.data
    criterion = make_criterion("ce", data.num_classes)
    criterion(model(data.x_train), data.y_train).backward()
    expected = {n: p.detach() - 0.5 * p.grad for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    result = trainer.fit()
    assert [e["step"] for e in result.epochs] == [1]
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("batch_size", [0, 10_000])
def test_full_batch_step_count(batch_size):
    result = train_run(tiny(**{"train.batch_size": batch_size, "train.epochs": 2}))
    assert [e["step"] for e in result.epochs] == [1, 2]


@pytest.mark.parametrize("key", ["train_loss", "test_loss", "grad_norm"])
def test_a_non_finite_loss_or_gradient_norm_ends_the_run_as_diverged(key):
    """An overflowing step can leave the loss finite (2.8e31) while the gradient norm is inf: diverged too."""
    from reglab.train.loop import EpochLog

    trainer = Trainer(tiny())
    log = EpochLog(trainer, None, [], pack=None)
    finite = {"epoch": 1, "step": 4, "train_loss": 2.8e31, "test_loss": 3.0, "grad_norm": 1e30}
    assert log.record(dict(finite)) and log.status == "done"
    assert not log.record({**finite, "epoch": 2, key: float("inf")})
    assert (log.status, log.diverged_epoch) == ("diverged", trainer.epoch)


def test_the_theory_objective_and_tracker_are_handed_to_the_trainer():
    """`Trainer` imports no theory: a config asking for a theory objective or condensation tracking it was
    not handed is refused; `build_trainer` and `reglab.train_run` resolve both from the config."""
    theory = tiny(**{"train.epochs": 1, "train.loss": "mse", "train.objective": "rs+r1",
                     "train.track_condensation": True, "regularize.dropout.p": 0.2})
    with pytest.raises(ConfigError, match="train.objective"):
        Trainer(theory)
    with pytest.raises(ConfigError, match="train.objective"):
        Trainer(tiny(), objective=lambda *args, **kwargs: torch.zeros(()))
    with pytest.raises(ConfigError, match="train.track_condensation"):
        Trainer(tiny(**{"train.track_condensation": True}))
    result = reglab.train_run(theory)
    assert result.status == "done" and "effective_ratio/0" in result.final
    assert _without_seconds(result.epochs) == _without_seconds(build_trainer(theory).fit().epochs)
    plain = train_run(theory.override({"train.objective": "drop", "train.track_condensation": False}))
    assert plain.final["train_loss"] != result.final["train_loss"]
    with pytest.raises(ConfigError, match="train.objective"):
        train_run(theory)  # the loop's own, handed nothing
