"""The per-epoch train evaluation: its `auto` size, that the trainer honours it, and the timing split."""

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import fake_training_clock
from reglab.cli import app
from reglab.config import ConfigError, RunConfig
from reglab.train import Trainer
from reglab.train.eval_budget import train_eval_size

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("n_train", "expected"), [
    (256, 256),          # below the floor: the whole (small) training set
    (4_000, 1_000),      # MNIST-1D: the floor of 1,000
    (6_000, 1_200),      # one fifth
    (50_000, 10_000),    # CIFAR: one fifth = the cap
    (60_000, 10_000),    # MNIST: capped at 10,000
])
def test_auto_size_is_a_fifth_of_the_training_set_within_bounds(n_train, expected):
    assert train_eval_size("auto", n_train) == expected


def test_an_explicit_size_is_capped_at_the_training_set_and_zero_turns_it_off():
    assert train_eval_size(500, 4_000) == 500
    assert train_eval_size(10_000, 6_000) == 6_000
    assert train_eval_size(0, 6_000) == 0
    with pytest.raises(ConfigError, match=r"train\.eval_train_samples: .*'auto' \(got -1\)"):
        RunConfig.from_dict({"train": {"eval_train_samples": -1}})


def tiny(n_train: int, eval_train_samples: int | str) -> RunConfig:
    return RunConfig.from_dict({
        "data": {"name": "mnist1d", "train_subset": n_train, "test_subset": 256},
        "model": {"name": "mlp", "options": {"widths": [16]}},
        "train": {"epochs": 1, "batch_size": 256, "device": "cpu", "eval_train_samples": eval_train_samples},
    })


def test_the_trainer_evaluates_exactly_the_auto_subset():
    trainer = Trainer(tiny(2_000, "auto"))
    metrics = trainer.fit().final
    x, y = trainer.data.x_train, trainer.data.y_train
    assert train_eval_size("auto", 2_000) == 1_000
    assert metrics["train_eval_acc"] == trainer.evaluate(x[:1_000], y[:1_000])["acc"]
    assert metrics["train_eval_acc"] != trainer.evaluate(x, y)["acc"]  # not the whole training set
    assert "train_eval_acc" not in Trainer(tiny(2_000, 0)).fit().final


def test_each_epoch_splits_its_time_into_training_and_evaluation(monkeypatch):
    """On a fake clock that only training (3 s an epoch) and each evaluation pass (5 s) advance, an
    epoch books 3 s of training and 5 s per pass (train subset and test set: 2) of evaluation."""
    fake_training_clock(monkeypatch, train_seconds=3.0, eval_seconds=5.0)
    for epoch in Trainer(tiny(512, "auto").override({"train.epochs": 2})).fit().epochs:
        assert (epoch["train_seconds"], epoch["eval_seconds"], epoch["seconds"]) == (3.0, 10.0, 13.0)


def test_train_json_reports_eval_and_train_seconds_per_epoch():
    result = CliRunner().invoke(app, ["train", "--dataset", "mnist1d", "--model", "mlp", "--epochs", "2",
                                      "--device", "cpu", "--set", "model.options.widths=[16]",
                                      "--set", "data.train_subset=512", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["config"]["train"]["eval_train_samples"] == "auto"
    assert [sorted(k for k in e if k.endswith("seconds")) for e in out["epochs"]] == \
        [["eval_seconds", "seconds", "train_seconds"]] * 2
    assert torch.isfinite(torch.tensor([e["eval_seconds"] for e in out["epochs"]])).all()
