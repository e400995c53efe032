"""Edges of the per-run and per-arm aggregates, against values worked by hand: the loss gap's sign,
robust aggregates of a loss, which runs count as diverged and which curves make the seed spread,
intervals from a single run, and time to target's longest epoch."""

import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reglab.study import StudySpec
from reglab.study.results import Study, run_record
from reglab.study.robust import iqm_interval, robust_table, stratified_bootstrap
from reglab.study.stability import stability_table
from reglab.study.store import RunRow
from reglab.study.target import time_to_target

SPEC = {"name": "t", "base": {"data": {"name": "mnist1d"}, "model": {"options": {"widths": [8]}}},
        "arms": {"base": {}, "x": {"regularize": {"dropout": {"p": 0.2}}}}}


def row(status="done", summary=None) -> RunRow:
    return RunRow("base__s0", "base", 0, 0, status, {}, "h", 1, None, None, 1.0, None, summary)


def test_the_loss_gap_is_test_loss_minus_train_loss():
    """Overfitting shows as a positive gap in both: train acc above test acc, test loss above train loss."""
    final = {"train_eval_acc": 0.9, "test_acc": 0.7, "train_eval_loss": 0.25, "test_loss": 1.0}
    record = run_record(row(summary={"final": final}), [])
    assert record["gap_acc"] == pytest.approx(0.2)
    assert record["gap_loss"] == pytest.approx(0.75)


def test_robust_aggregates_of_a_loss_count_a_lower_loss_as_an_improvement():
    """Every run of x has a lower test loss than every baseline run: x improves on the baseline with
    probability 1 (not 0, as it would for an accuracy)."""
    spec = StudySpec.from_dict(SPEC)
    runs = pd.DataFrame([{"run_id": f"{arm}__s{s}", "arm": arm, "seed": s, "status": "done", "final_test_loss": v}
                         for arm, values in (("base", [0.9, 1.0, 1.1]), ("x", [0.5, 0.6, 0.7]))
                         for s, v in enumerate(values)])
    study = Study(Path("."), spec, runs, pd.DataFrame(columns=["run_id", "arm", "seed"]))
    x = study.robust("final_test_loss").set_index("arm").loc["x"]
    assert x["poi"] == 1.0 and x["poi_low"] == 1.0 and x["poi_high"] == 1.0
    assert x["iqm"] == pytest.approx(0.6)


def test_robust_table_uses_only_runs_that_finished_done():
    """A diverged or failed run's numbers (here finite, as a run that diverged late can have) are no sample
    of the arm's performance: IQM over the done runs, probability of improvement over done runs only."""
    runs = pd.DataFrame([
        {"arm": "base", "status": "done", "final_test_acc": 0.70},
        {"arm": "base", "status": "done", "final_test_acc": 0.72},
        {"arm": "base", "status": "failed", "final_test_acc": 0.99},
        {"arm": "x", "status": "done", "final_test_acc": 0.80},
        {"arm": "x", "status": "done", "final_test_acc": 0.82},
        {"arm": "x", "status": "diverged", "final_test_acc": 0.10},
    ])
    table = robust_table(runs, ["base", "x"], "base", "final_test_acc", resamples=200).set_index("arm")
    assert table.loc["x", "n"] == 2 and table.loc["x", "iqm"] == pytest.approx(0.81)
    assert table.loc["base", "n"] == 2 and table.loc["base", "iqm"] == pytest.approx(0.71)
    assert table.loc["x", "poi"] == 1.0  # both done x runs beat both done baseline runs


def test_a_bootstrap_interval_needs_two_runs_in_each_stratum():
    assert all(math.isnan(v) for v in iqm_interval([0.7]))
    assert all(math.isnan(v) for v in stratified_bootstrap([[0.7, 0.8], [0.5]], lambda a, b, axis=-1: a.mean(axis)))


def _epochs(curves: dict[str, list[float]], arm="a") -> pd.DataFrame:
    return pd.DataFrame([{"run_id": rid, "arm": arm, "seed": int(rid[-1]), "epoch": t + 1, "test_acc": v,
                          "test_loss": 1 - v} for rid, curve in curves.items() for t, v in enumerate(curve)])


def test_stability_counts_only_diverged_runs_as_diverged_and_spreads_only_done_curves():
    runs = pd.DataFrame({"arm": ["a"] * 4, "run_id": ["a__s0", "a__s1", "a__s2", "a__s3"],
                         "status": ["done", "done", "diverged", "failed"],
                         "fluctuation": [0.1, 0.3, math.nan, math.nan]})
    epochs = _epochs({"a__s0": [0.5, 0.6], "a__s1": [0.7, 0.9], "a__s2": [0.1, 0.1]})
    row = stability_table(runs, epochs, ["a"]).iloc[0]
    assert (row["runs"], row["n"], row["diverged"]) == (4, 2, 1)  # the failed run did not diverge
    # seed spread over the two done runs: epoch 1 std(0.5, 0.7), epoch 2 std(0.6, 0.9)
    expected = np.mean([statistics.stdev([0.5, 0.7]), statistics.stdev([0.6, 0.9])])
    assert row["spread_test_acc"] == pytest.approx(expected)
    assert row["fluctuation_mean"] == pytest.approx(0.2)


def test_time_to_target_longest_epoch_is_the_longest_finished_run():
    runs = pd.DataFrame([{"run_id": f"a__s{s}", "arm": "a", "seed": s, "status": "done"} for s in range(3)])
    epochs = _epochs({"a__s0": [0.5, 0.95], "a__s1": [0.5, 0.6, 0.7, 0.8], "a__s2": [0.9, 0.91, 0.92]})
    epochs["seconds"] = 1.0
    row = time_to_target(runs, epochs, ["a"], "test_acc", 0.9).iloc[0]
    assert row["longest_epoch"] == 4 and row["epochs_reached"] == [1, 2] and row["median_epoch"] == 2
