"""Regularizers wired through the real trainer: composition, L2 = weight decay end to end,
gradient clipping at the optimizer step, EMA as the evaluated model."""

import math

import pytest
import torch

from reglab.config import RunConfig
from reglab.train import Trainer, train_run
from reglab.train.rundir import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides) -> RunConfig:
    base = {
        "seed": 0,
        "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
        "model": {"name": "mlp", "options": {"widths": [16]}},
        "optim": {"name": "sgd", "lr": 0.05},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 128},
    }
    return RunConfig.from_dict(base).override(overrides)


@pytest.mark.parametrize("mixing", [{"regularize.mixup": 0.4}, {"regularize.cutmix": 1.0}])
def test_everything_at_once(mixing):
    cfg = tiny(**{
        "optim.name": "nesterov", "optim.weight_decay": 1e-4, "optim.schedule.name": "cosine",
        "optim.schedule.warmup_epochs": 0.5, "regularize.l1": 1e-5, "regularize.l2": 1e-4,
        "regularize.dropout.p": 0.2, "regularize.ema": 0.9, "regularize.label_smoothing": 0.1,
        "regularize.grad_clip": 1.0, "regularize.sam_rho": 0.05, "data.val_split": 0.25,
        "regularize.early_stopping.patience": 2, **mixing,
    })
    result = train_run(cfg)
    assert result.status == "done"
    assert all(math.isfinite(e["train_loss"]) and math.isfinite(e["val_loss"]) for e in result.epochs)
    assert "train_acc" not in result.epochs[0]  # accuracy of mixed batches is not reported


def test_l2_equals_weight_decay_through_the_trainer():
    """Same weights and metrics; only `grad_norm` differs (it includes the penalty's gradient λw
    with `l2`, while torch adds weight decay inside the optimizer, after the norm is taken)."""
    lam = 2.0**-7  # λ·w exact: bit-identical (see test_regularize_penalties)
    runs = [Trainer(tiny(**over)) for over in ({"regularize.l2": lam}, {"optim.weight_decay": lam}, {})]
    metrics = [[{k: v for k, v in e.items() if not k.endswith("seconds") and k != "grad_norm"} for e in t.fit().epochs]
               for t in runs]
    assert metrics[0] == metrics[1] != metrics[2]
    a, b, c = (t.model.state_dict() for t in runs)
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


def test_grad_clip_bounds_the_norm_the_optimizer_sees():
    trainer = Trainer(tiny(**{"optim.lr": 0.5, "regularize.grad_clip": 0.05}))
    seen = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        seen.append(float(torch.nn.utils.get_total_norm(grads)))

    trainer.optimizer.register_step_pre_hook(record)
    result = trainer.fit()
    assert len(seen) == 8 and max(seen) <= 0.05 * (1 + 1e-6)
    assert min(e["grad_norm"] for e in result.epochs) > 0.05  # the metric is the norm before clipping


def test_ema_is_the_evaluated_and_saved_model(tmp_path):
    trainer = Trainer(tiny(**{"regularize.ema": 0.5}))
    result = trainer.fit(tmp_path)
    saved = load_checkpoint(tmp_path / "model.pt")
    ema_state = trainer.ema.module.state_dict()
    assert all(torch.equal(saved[k], ema_state[k]) for k in ema_state)
    assert not all(torch.equal(saved[k], v) for k, v in trainer.model.state_dict().items())
    assert result.final["test_loss"] == trainer.evaluate(trainer.data.x_test, trainer.data.y_test)["loss"]


def test_sam_through_the_trainer_differs_and_is_deterministic():
    a, b = train_run(tiny(**{"regularize.sam_rho": 0.1})), train_run(tiny(**{"regularize.sam_rho": 0.1}))
    plain = train_run(tiny())
    assert a.epochs[-1]["test_loss"] == b.epochs[-1]["test_loss"] != plain.epochs[-1]["test_loss"]
