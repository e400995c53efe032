"""Per-class metrics against scikit-learn on random labels; time to target and its median on
constructed cases; the trainer's confusion matrix against a direct count."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from reglab.config import ConfigError, RunConfig
from reglab.study.classes import class_metrics, micro, run_columns
from reglab.study.target import fraction_reached, median_time, parse_target, run_times, time_to_target
from reglab.train.loop import Trainer


def test_class_metrics_match_scikit_learn_on_random_labels():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for c in (2, 4, 10):
        y, p = rng.integers(0, c, 300), rng.integers(0, c, 300)
        right = rng.random(300) < 0.5
        p[right] = y[right]  # better than chance
        p[:5] = 0  # make class 0 over-predicted; some class may never be predicted
        cm = metrics.confusion_matrix(y, p, labels=range(c))
        got = class_metrics(cm)
        prec, rec, f1, sup = metrics.precision_recall_fscore_support(y, p, labels=range(c), zero_division=0)
        assert got.precision == pytest.approx(prec) and got.recall == pytest.approx(rec)
        assert got.f1 == pytest.approx(f1) and got.support == pytest.approx(sup)
        assert got.macro["f1"] == pytest.approx(metrics.f1_score(y, p, average="macro", zero_division=0))
        assert micro(cm)["f1"] == pytest.approx(metrics.f1_score(y, p, average="micro"))


def test_class_never_predicted_has_zero_precision_and_f1():
    cm = [[5, 0], [3, 0]]  # class 1 never predicted
    m = class_metrics(cm)
    assert m.precision.tolist() == [5 / 8, 0.0] and m.recall.tolist() == [1.0, 0.0] and m.f1[1] == 0.0
    assert run_columns(cm)["micro_f1"] == pytest.approx(5 / 8)
    assert math.isnan(run_columns(None)["macro_f1"])
    with pytest.raises(ValueError, match="square"):
        class_metrics([[1, 2, 3]])


def test_trainer_confusion_counts_the_test_predictions():
    cfg = RunConfig.from_dict({"data": {"name": "mnist1d", "train_subset": 128, "test_subset": 200},
                               "model": {"name": "mlp", "options": {"widths": [8]}},
                               "train": {"epochs": 1, "device": "cpu", "eval_batch_size": 64}})
    trainer = Trainer(cfg)
    cm = np.array(trainer.test_confusion())
    with torch.no_grad():
        predicted = trainer.model.eval()(trainer.data.x_test).argmax(1).numpy()
    y = trainer.data.y_test.numpy()
    expected = np.zeros_like(cm)
    np.add.at(expected, (y, predicted), 1)
    assert (cm == expected).all() and cm.sum() == 200
    result = trainer.fit()  # the last epoch's test evaluation gives the run's matrix: the trained model's
    with torch.no_grad():
        predicted = trainer.model.eval()(trainer.data.x_test).argmax(1).numpy()
    expected = np.zeros_like(cm)
    np.add.at(expected, (y, predicted), 1)
    assert (np.array(result.confusion) == expected).all()
    assert np.trace(expected) / 200 == result.final["test_acc"]


def test_parse_target():
    assert parse_target("test_acc=0.9") == {"test_acc": 0.9}
    for bad in ("test_acc", "test_acc=", "=0.9", "test_acc=high"):
        with pytest.raises(ConfigError, match="--target .*expected METRIC=VALUE"):
            parse_target(bad)


def test_a_target_on_no_epoch_metric_is_refused_before_anything_runs():
    from reglab.study import load_spec

    spec = load_spec("quickstart").override({"data.val_split": 0.1})
    assert spec.with_statistics(target={"val_loss": 0.5}).statistics.target == {"val_loss": 0.5}
    with pytest.raises(ConfigError, match="statistics.target: 'test_acz' is not an epoch metric"):
        spec.with_statistics(target={"test_acz": 0.9})
    with pytest.raises(ConfigError, match="statistics.target: val_acc needs a validation split, which arm 'baseline'"):
        load_spec("quickstart").with_statistics(target={"val_acc": 0.9})


def test_median_time_by_hand():
    # reached at 2 and 3, 2 of 4 never: half reached by 3
    assert median_time(np.array([2, 3, 4, 4]), np.array([True, True, False, False])) == 3
    # a run that never reaches it stays counted, however early it ended: 3 of 4 reached, the 2nd by 5
    assert median_time(np.array([1, 3, 5, 5]), np.array([False, True, True, True])) == 5
    assert median_time(np.array([4, 4]), np.array([False, False])) == math.inf
    assert median_time(np.array([2, 4, 6]), np.array([True, False, False])) == math.inf  # 1 of 3
    assert median_time(np.array([7, 1, 4]), np.array([True, False, True])) == 7  # 2 of 3: the 2nd arrival
    assert math.isnan(median_time(np.array([]), np.array([], bool)))
    # brute force: the median is the first t whose share reached is ≥ ½, for random cases
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 8))
        times, reached = rng.integers(1, 6, n).astype(float), rng.random(n) < 0.6
        share = {t: (reached & (times <= t)).sum() / n for t in range(1, 6)}
        expected = min((t for t in share if share[t] >= 0.5), default=math.inf)
        assert median_time(times, reached) == expected
        x, y = fraction_reached(times, reached)
        assert all(y[np.searchsorted(x, t, side="right") - 1] == share[t] for t in range(1, 6))


def test_runs_that_never_reach_the_target_are_not_censored():
    # 5 runs: two diverge at epoch 1, two reach it at epochs 5 and 6, one never does. Censoring the
    # diverged runs at epoch 1 would leave 3 at risk and give a median of 6 (S(6) = 2/3 · 1/2).
    curves = {0: [0.1], 1: [0.1], 2: [0.5, 0.6, 0.7, 0.8, 0.9, 0.9], 3: [0.5, 0.6, 0.7, 0.8, 0.85, 0.9],
              4: [0.5, 0.6, 0.7, 0.8, 0.85, 0.85]}
    runs, epochs = _study({("a", s): c for s, c in curves.items()}, statuses={"a__s0": "diverged", "a__s1": "diverged"})
    row = time_to_target(runs, epochs, ["a"], "test_acc", 0.9).iloc[0]
    assert (row["reached"], row["n"], row["median_epoch"]) == (2, 5, math.inf)
    # wall time: the one run that reached it took longest; the two that never did ended earlier
    runs, epochs = _study({("b", 0): [0.5, 0.95], ("b", 1): [0.5, 0.6], ("b", 2): [0.5, 0.6]})
    epochs.loc[epochs["seed"] > 0, "seconds"] = 1.9
    row = time_to_target(runs, epochs, ["b"], "test_acc", 0.9).iloc[0]
    assert row["median_seconds"] == math.inf and row["median_epoch"] == math.inf


def _study(curves: dict[tuple[str, int], list[float]], statuses=None):
    runs, epochs = [], []
    for (arm, seed), curve in curves.items():
        rid = f"{arm}__s{seed}"
        runs.append({"run_id": rid, "arm": arm, "seed": seed, "status": (statuses or {}).get(rid, "done")})
        epochs += [{"run_id": rid, "arm": arm, "seed": seed, "epoch": e + 1, "test_acc": v, "seconds": 2.0,
                    "test_loss": 1 - v} for e, v in enumerate(curve)]
    return pd.DataFrame(runs), pd.DataFrame(epochs)


def test_time_to_target_keeps_runs_that_never_reach_it():
    runs, epochs = _study({("a", 0): [0.5, 0.91, 0.95], ("a", 1): [0.5, 0.6, 0.7],
                           ("a", 2): [0.92, 0.93, 0.9], ("b", 0): [0.1, 0.2, 0.3], ("b", 1): [0.2, 0.3]},
                          statuses={"b__s1": "diverged"})
    times = run_times(runs, epochs, "test_acc", 0.9)
    a = times[times["arm"] == "a"].set_index("seed")
    assert a["reached"].tolist() == [True, False, True] and a["epoch"].tolist() == [2, 3, 1]
    assert a["seconds"].tolist() == [4.0, 6.0, 2.0]
    table = time_to_target(runs, epochs, ["a", "b"], "test_acc", 0.9).set_index("arm")
    assert table.loc["a", "reached"] == 2 and table.loc["a", "n"] == 3
    assert table.loc["a", "median_epoch"] == 2 and table.loc["a", "median_seconds"] == 4.0
    assert table.loc["b", "n"] == 2 and table.loc["b", "median_epoch"] == math.inf  # diverged run kept
    loss = run_times(runs, epochs, "test_loss", 0.1)  # lower is better for losses
    assert loss.set_index("run_id").loc["a__s2", "epoch"] == 1
    with pytest.raises(ConfigError, match="target: 'val_acc' is not an epoch metric"):  # no validation split
        run_times(runs, epochs, "val_acc", 0.9)
