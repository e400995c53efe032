"""Stochastic weight averaging (Izmailov et al. 2018) against its definition: the evaluated network is
the plain mean of the last epochs' weights with BatchNorm statistics recomputed for it, the averaged
epochs' learning rate follows SWALR's annealing, and a resumed run ends as an uninterrupted one."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import assert_same_run
from reglab.config import ConfigError, RunConfig
from reglab.train.loop import Trainer, load_trained, train_run
from reglab.train.packed import PackedTrainer, pack_groups, packing_blocker

BASE = {
    "seed": 0,
    "data": {"name": "mnist1d", "train_subset": 257, "test_subset": 256},  # 4 batches of 64; the 1 left is dropped
    "model": {"name": "mlp", "options": {"widths": [16]}, "norm": "batch"},
    "optim": {"name": "momentum", "lr": 0.1},
    "train": {"epochs": 4, "batch_size": 64, "device": "cpu", "eval_train_samples": 128},
}


def config(seed: int = 0, **overrides) -> RunConfig:
    return RunConfig.from_dict({**BASE, "seed": seed}).override(overrides)


def epoch_weights(cfg: RunConfig) -> list[dict[str, torch.Tensor]]:
    """The model's weights at the end of every epoch of `cfg` trained without SWA."""
    snapshots = []
    Trainer(cfg).fit(callbacks=[lambda _e, model, _m: snapshots.append(
        {k: v.clone() for k, v in model.state_dict().items()})])
    return snapshots


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_the_evaluated_network_is_the_mean_of_the_last_epochs_weights(dropout):
    """With dropout too: the BatchNorm pass draws its masks from a fork of the generator."""
    plain = epoch_weights(config(**{"regularize.dropout.p": dropout}))
    trainer = Trainer(config(**{"regularize.swa.epochs": 2, "regularize.dropout.p": dropout}))
    seen = []
    result = trainer.fit(callbacks=[lambda e, model, _m: seen.append((e, model is trainer.swa.module))])
    assert seen == [(1, False), (2, False), (3, True), (4, True)]  # the model itself until the average exists
    assert trainer.swa.n_averaged.item() == 2
    for name, p in trainer.swa.module.named_parameters():
        torch.testing.assert_close(p, (plain[2][name] + plain[3][name]) / 2, atol=1e-6, rtol=0, msg=name)
    for name, p in trainer.model.state_dict().items():  # swa.lr unset: training itself is unchanged
        assert torch.equal(p, plain[3][name]), name
    # the averaged network's statistics, on the training set cut as training cuts it (4 batches of 64, the
    # last sample left out): the mean of the batch means of its first layer's output and of the unbiased
    # variances
    net = trainer.swa.module
    with torch.no_grad():
        h = net[0](trainer.data.x_train[:256]).view(4, 64, -1)
    bn = net[1]
    torch.testing.assert_close(bn.running_mean, h.mean(1).mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(bn.running_var, h.var(1, unbiased=True).mean(0), atol=1e-5, rtol=1e-5)
    evaluated = trainer.evaluate(trainer.data.x_test, trainer.data.y_test)
    assert result.final["test_loss"] == pytest.approx(evaluated["loss"], rel=1e-6)


@pytest.mark.parametrize("anneal", ["linear", "cos"])
def test_the_averaged_epochs_learning_rate_anneals_to_swa_lr(anneal):
    cfg = config(**{"regularize.swa": {"epochs": 2, "lr": 0.01, "anneal_epochs": 1, "anneal": anneal}})
    trainer = Trainer(cfg)
    assert trainer.steps_per_epoch == 4
    factor = trainer.schedule.per_step.lr_lambdas[0]
    rates = [0.1 * factor(step) for step in range(4 * 4)]

    def alpha(t: float) -> float:  # SWALR's annealing functions
        return t if anneal == "linear" else (1 - math.cos(math.pi * t)) / 2

    expected = [0.1] * 8 + [alpha(t) * 0.01 + (1 - alpha(t)) * 0.1 for t in (0.25, 0.5, 0.75, 1.0)] + [0.01] * 4
    assert rates == pytest.approx(expected, rel=1e-12)
    epochs = Trainer(cfg).fit().epochs
    assert [e["lr"] for e in epochs] == pytest.approx([0.1, 0.1, expected[8], 0.01], rel=1e-12)


def test_a_resumed_run_ends_as_the_uninterrupted_one(tmp_path):
    cfg = config(**{"regularize.swa": {"epochs": 3, "lr": 0.02}})
    whole = train_run(cfg, run_dir=tmp_path / "whole")

    def interrupt(epoch, _model, _metrics):
        if epoch == 3:  # after epoch 2's checkpoint, inside the averaged epochs
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, run_dir=tmp_path / "cut", callbacks=[interrupt])
    unfinished = load_trained(tmp_path / "cut")[1].state_dict()  # no model.pt yet: the checkpoint's average
    checkpoint = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["swa"]["n_averaged"].item() == 1
    assert all(torch.equal(v, checkpoint["swa"][f"module.{k}"]) for k, v in unfinished.items())
    raw = load_trained(tmp_path / "cut", weights=tmp_path / "cut" / "checkpoint.pt")[1].state_dict()
    assert all(torch.equal(v, checkpoint["model"][k]) for k, v in raw.items())  # named: the raw weights
    resumed = train_run(cfg, run_dir=tmp_path / "cut")
    assert [e["test_loss"] for e in resumed.epochs] == [e["test_loss"] for e in whole.epochs]
    saved = [torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("whole", "cut")]
    assert saved[0].keys() == saved[1].keys() and all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])


def test_swa_runs_pack_with_other_runs_and_equal_their_solo_runs():
    """The pack's lr table is each run's schedule (SWA's annealing included), and each run averages its
    own unstacked weights at its epoch end."""
    configs = [config(0, **{"regularize.swa": {"epochs": 2, "lr": 0.02, "anneal_epochs": 1}}),
               config(1, **{"regularize.swa.epochs": 3}), config(2)]
    assert pack_groups(configs) == [[0, 1, 2]] and packing_blocker(configs[0]) is None
    solo = [Trainer(c) for c in configs]
    solo_results = [t.fit() for t in solo]
    packed = [Trainer(c) for c in configs]
    packed_results = PackedTrainer(packed).fit()
    for s, p, rs, rp in zip(solo, packed, solo_results, packed_results, strict=True):
        assert_same_run(s, p, rs.epochs, rp.epochs)
    for s, p in zip(solo[:2], packed[:2], strict=True):
        assert p.swa.n_averaged.item() == s.swa.n_averaged.item() > 0
        for (name, a), (_, b) in zip(s.swa.module.state_dict().items(), p.swa.module.state_dict().items(), strict=True):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=0, msg=name)


def test_refused_settings_name_their_field(tmp_path):
    for overrides, message in (
        ({"regularize.swa.epochs": 5}, r"regularize.swa.epochs: averages the last 5 epochs of train.epochs = 4"),
        ({"regularize.swa.epochs": 2, "regularize.ema": 0.9}, r"regularize.swa and regularize.ema"),
        ({"regularize.swa.epochs": 2, "regularize.early_stopping.patience": 1,
          "regularize.early_stopping.monitor": "test_loss"}, r"regularize.swa: not with early stopping"),
        ({"regularize.swa": {"epochs": 2, "lr": 0.01}, "optim.schedule.name": "plateau"},
         r"regularize.swa.lr: not with the plateau schedule"),
        ({"regularize.swa": {"epochs": 2, "anneal_epochs": 3}}, r"regularize.swa.anneal_epochs: at most"),
        ({"regularize.swa.epochs": 2, "train.max_steps": 10}, r"regularize.swa: not with train.max_steps"),
    ):
        with pytest.raises(ConfigError, match=message):
            config(**overrides)
    cfg = config(**{"regularize.swa.epochs": 2})
    train_run(cfg, run_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"averages its last epochs \(regularize.swa\), which a larger budget"):
        train_run(cfg.override({"train.epochs": 6}), run_dir=tmp_path / "a", extend=True)
