"""Early stopping: patience, best-weights restore, checkpointed state; through the trainer too."""

import math

import pytest
import torch
from torch import nn

from reglab.config import ConfigError, EarlyStoppingConfig, RunConfig
from reglab.regularize.early_stopping import EarlyStopping
from reglab.train import Trainer
from reglab.train.rundir import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_patience_and_restore_unit():
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(EarlyStoppingConfig(patience=2))
    losses = [1.0, 0.5, 0.7, 0.4, 0.6, 0.45]
    stops = []
    for epoch, loss in enumerate(losses, start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        stops.append(stopper.update(epoch, {"val_loss": loss}, model))
        if stops[-1]:
            break
    assert stops == [False, False, False, False, False, True] and stopper.stopped_epoch == 6
    assert stopper.best_epoch == 4 and stopper.best == 0.4
    stopper.restore(model)
    assert torch.all(model.weight == 4)
    resumed = EarlyStopping(EarlyStoppingConfig(patience=2))
    resumed.load_state_dict(stopper.state_dict())
    assert resumed.stopped and resumed.best_epoch == 4


def test_maximises_accuracy_and_ignores_nan():
    stopper = EarlyStopping(EarlyStoppingConfig(patience=1, monitor="test_acc"))
    model = nn.Linear(1, 1)
    assert not stopper.update(1, {"test_acc": 0.5}, model)
    assert not stopper.update(2, {"test_acc": 0.6}, model)
    assert stopper.update(3, {"test_acc": math.nan}, model)
    assert stopper.best_epoch == 2


def test_missing_metric_names_the_field():
    stopper = EarlyStopping(EarlyStoppingConfig(patience=1, monitor="val_acc"))
    with pytest.raises(ConfigError, match="regularize.early_stopping.monitor"):
        stopper.update(1, {"val_loss": 1.0}, nn.Linear(1, 1))


def test_val_monitor_needs_a_validation_split():
    with pytest.raises(ConfigError, match="early_stopping.monitor"):
        RunConfig.from_dict({"regularize": {"early_stopping": {"patience": 2}}})


def _overfitting(**overrides) -> RunConfig:
    """Tiny data, a wide MLP and a high learning rate: the validation loss rises after a few epochs."""
    base = {
        "seed": 0,
        "data": {"name": "mnist1d", "train_subset": 128, "test_subset": 128, "val_split": 0.5},
        "model": {"name": "mlp", "options": {"widths": [64]}},
        "optim": {"name": "momentum", "lr": 0.2},
        "regularize": {"early_stopping": {"patience": 3}},
        "train": {"epochs": 40, "batch_size": 16, "device": "cpu", "eval_train_samples": 0},
    }
    return RunConfig.from_dict(base).override(overrides)


def test_trainer_restores_the_best_epoch(tmp_path):
    trainer = Trainer(_overfitting())
    result = trainer.fit(tmp_path)
    val = [e["val_loss"] for e in result.epochs]
    best = val.index(min(val)) + 1
    assert result.stopped_epoch == len(val) == best + 3 < 40  # val loss rose for `patience` epochs
    assert result.final == result.epochs[best - 1]
    restored = trainer.model.state_dict()
    saved = load_checkpoint(tmp_path / "model.pt")
    assert all(torch.equal(saved[k], v) for k, v in restored.items())
    assert all(torch.equal(trainer.stopper.best_state[k], v) for k, v in restored.items())
    assert trainer.evaluate(trainer.data.x_val, trainer.data.y_val)["loss"] == result.final["val_loss"]
    # the confusion matrix is the restored (best) model's, not the last epoch's
    assert sum(result.confusion[i][i] for i in range(10)) / 128 == result.final["test_acc"]
    with torch.no_grad():
        predicted = trainer.model.eval()(trainer.data.x_test).argmax(1)
    assert result.confusion == torch.bincount(trainer.data.y_test * 10 + predicted, minlength=100).view(10, 10).tolist()
    # independent expectation: the same run stopped by hand after `best` epochs has these weights
    reference = Trainer(_overfitting(**{"train.epochs": best, "regularize.early_stopping.patience": 0}))
    reference.fit()
    assert all(torch.equal(reference.model.state_dict()[k], v) for k, v in restored.items())
    # resuming a run that has stopped does not train on
    again = Trainer(_overfitting()).fit(tmp_path)
    assert again.stopped_epoch == result.stopped_epoch and len(again.epochs) == len(result.epochs)
    assert again.final == result.final


@pytest.mark.parametrize(("monitor", "values"), [("val_acc", [0.5, 0.7, 0.7, 0.7]),
                                                 ("val_loss", [1.0, 0.5, 0.5, 0.5])])
def test_early_stopping_a_tie_is_not_an_improvement(monitor, values):
    """Docstring: improvement is strict. Accuracies tie often (discrete), so a plateau must stop training
    and the *first* epoch reaching the best value is the one restored."""
    from reglab.config import EarlyStoppingConfig
    from reglab.regularize.early_stopping import EarlyStopping

    model = nn.Linear(1, 1)
    stopper = EarlyStopping(EarlyStoppingConfig(patience=2, monitor=monitor))
    stops = []
    for epoch, value in enumerate(values, start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        stops.append(stopper.update(epoch, {monitor: value}, model))
    assert stops == [False, False, False, True] and stopper.best_epoch == 2
    stopper.restore(model)
    assert torch.all(model.weight == 2)
