"""What the training loops report and follow, against independent references: the evaluation loss
without label smoothing, the plateau schedule's monitored loss (torch's rule replayed by hand), and a
packed run's own reduced lr, training accuracy over the samples it saw and smoothed MSE targets."""

import pytest
import torch

from conftest import assert_same_run
from conftest import mlp_config as config
from reglab.train.loop import Trainer
from reglab.train.packed import PackedTrainer

pytestmark = pytest.mark.usefixtures("one_thread")


# momentum SGD at lr 1.0: the monitored train_eval_loss rises after epoch 2 while the training loss falls,
# so a plateau schedule with patience 0 halves the lr once (the wrong monitor would not)
PLATEAU = {"optim.name": "momentum", "optim.lr": 1.0, "optim.schedule.name": "plateau",
           "optim.schedule.patience": 0, "optim.schedule.gamma": 0.5, "train.epochs": 4}




def plateau_lrs(monitored: list[float], lr: float, gamma: float, patience: int = 0) -> list[float]:
    """The lr of each epoch under torch's ReduceLROnPlateau (mode min, rel threshold 1e-4, no cooldown),
    stepped once after each epoch with that epoch's monitored loss."""
    best, bad, lrs = float("inf"), 0, []
    for value in monitored:
        lrs.append(lr)
        if value < best * (1 - 1e-4):
            best, bad = value, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = lr * gamma, 0
    return lrs


def test_reported_test_loss_is_the_unsmoothed_cross_entropy_under_label_smoothing():
    """Label smoothing shapes the training objective only: the reported test loss is the plain
    cross-entropy of the evaluated model."""
    trainer = Trainer(config(0, **{"regularize.label_smoothing": 0.3, "train.epochs": 1}))
    final = trainer.fit().final
    model, data = trainer.evaluated_model.eval(), trainer.data
    with torch.no_grad():
        logp = model(data.x_test).log_softmax(1)
    plain = -logp[torch.arange(len(data.y_test)), data.y_test].mean().item()
    assert final["test_loss"] == pytest.approx(plain, abs=1e-5)


@pytest.mark.parametrize("ema", [None, 0.9])
def test_weight_norm_is_that_of_the_saved_linear_weights(tmp_path, ema):
    """weight_norm is ‖w‖₂ over the Linear weights of the evaluated model: recomputed from model.pt (the EMA's
    weights where the run keeps one), and smaller under strong L2 than on the same seed without it."""
    norms = {}
    for l2 in (0.0, 0.1):
        cfg = config(0, **{"regularize.l2": l2, "regularize.ema": ema, "optim.weight_decay": 0.0})
        result = Trainer(cfg).fit(tmp_path / f"l2_{l2}")
        saved = torch.load(tmp_path / f"l2_{l2}" / "model.pt", weights_only=True)
        matrices = [v for k, v in saved.items() if k.endswith("weight") and v.ndim == 2]
        assert len(matrices) == 3  # widths [64, 64] and the head
        expected = torch.cat([m.flatten() for m in matrices]).double().norm().item()
        assert result.final["weight_norm"] == pytest.approx(expected, rel=1e-5)
        norms[l2] = [e["weight_norm"] for e in result.epochs]
    assert all(a < b for a, b in zip(norms[0.1], norms[0.0], strict=True))


@pytest.mark.parametrize("val_split", [0.0, 0.25])
def test_plateau_schedule_follows_the_monitored_loss(val_split):
    """The plateau schedule follows the validation loss when there is a split, else the train-eval loss
    (the documented order), not the running training loss."""
    result = Trainer(config(0, **PLATEAU, **{"data.val_split": val_split})).fit()
    key = "val_loss" if val_split else "train_eval_loss"
    lrs = [e["lr"] for e in result.epochs]
    assert lrs == plateau_lrs([e[key] for e in result.epochs], 1.0, 0.5)
    assert min(lrs) < 1.0  # the case is meaningful: a reduction happened
    assert lrs != plateau_lrs([e["train_loss"] for e in result.epochs], 1.0, 0.5)


def test_a_packed_plateau_run_trains_at_its_reduced_lr():
    """After its plateau halves the lr, a packed run steps at the halved lr, as its solo run does."""
    configs = [config(0, **PLATEAU), config(1, **{"train.epochs": 4})]
    solo = [Trainer(c) for c in configs]
    solo_epochs = [t.fit().epochs for t in solo]
    assert min(e["lr"] for e in solo_epochs[0]) < 1.0  # the plateau reduced the lr
    packed = [Trainer(c) for c in configs]
    for s, p, es, result in zip(solo, packed, solo_epochs, PackedTrainer(packed).fit(), strict=True):
        assert_same_run(s, p, es, result.epochs)


def test_packed_train_acc_is_each_runs_own_over_the_samples_it_saw():
    """With 256 samples in batches of 51 the single-sample last batch is left out (255 seen): each run's
    train_acc is its own correct count over those 255, as its solo run reports it."""
    configs = [config(s, **{"train.batch_size": 51, "optim.lr": 3e-3 * (s + 1)}) for s in range(2)]
    solo = [Trainer(c) for c in configs]
    solo_epochs = [t.fit().epochs for t in solo]
    packed = [Trainer(c) for c in configs]
    for s, p, es, result in zip(solo, packed, solo_epochs, PackedTrainer(packed).fit(), strict=True):
        assert_same_run(s, p, es, result.epochs)
        for e in result.epochs:
            assert 0 <= e["train_acc"] <= 1 and (e["train_acc"] * 255) == pytest.approx(round(e["train_acc"] * 255))


def test_packed_mse_loss_smooths_its_one_hot_targets_per_run():
    """The smoothed one-hot target puts s/C on every class: ½‖f − t‖² averaged over the batch by hand,
    t = (1 − s)·onehot + s/C, each run with its own s."""
    smoothing = [0.2, 0.0]
    pack = PackedTrainer([Trainer(config(i, **{"train.loss": "mse", "regularize.label_smoothing": s}))
                          for i, s in enumerate(smoothing)])
    g = torch.Generator().manual_seed(0)
    c = pack.data.num_classes
    out = torch.randn(2, 7, c, generator=g)
    y = torch.randint(0, c, (7,), generator=g)
    losses = pack._losses(out, y)
    for k, s in enumerate(smoothing):
        expected = 0.0
        for b in range(7):
            for j in range(c):
                t = (1 - s) * (j == int(y[b])) + s / c
                expected += 0.5 * (float(out[k, b, j]) - t) ** 2
        assert float(losses[k]) == pytest.approx(expected / 7, rel=1e-5)


def test_an_epoch_cut_short_by_max_steps_averages_the_steps_it_took(monkeypatch):
    """max_steps = 3 stops the first epoch after 3 of its 6 batches: its grad_norm is the mean of those
    3 steps' gradient norms (recorded as the trainer takes them), not their sum over 6."""
    from torch import nn

    norms = []
    total_norm = nn.utils.get_total_norm

    def recorded(tensors, *args, **kwargs):
        norm = total_norm(tensors, *args, **kwargs)
        if not any(isinstance(t, nn.Parameter) for t in tensors):  # gradients, not the epoch's weight norm
            norms.append(norm.item())
        return norm

    monkeypatch.setattr(nn.utils, "get_total_norm", recorded)
    result = Trainer(config(0, **{"train.max_steps": 3})).fit()
    (epoch,) = result.epochs
    assert epoch["step"] == 3 and len(norms) == 3
    assert epoch["grad_norm"] == pytest.approx(sum(norms) / 3, rel=1e-6)
