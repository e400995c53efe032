"""The search tables of a `reglab tune` report, from a trials table built by hand: each column shows its
own statistic, and the best row names the configuration."""

import pandas as pd
import pytest

from reglab.report.tune import best_rows, trial_rows, tune_report
from reglab.study import StudySpec
from reglab.study.sweep import parse_param

TRIAL = {"trial": 3, "state": "complete", "param:dropout": 0.1, "arm": "dropout=0.1", "objective": "iqm",
         "metric": "test_acc", "value": 0.85, "mean": 0.80, "std": 0.02, "n": 3, "ci_low": 0.75, "ci_high": 0.83,
         "iqm": 0.85, "iqm_low": 0.82, "iqm_high": 0.88, "error": ""}


def test_each_trial_column_shows_its_own_statistic():
    failed = {**TRIAL, "trial": 4, "state": "fail", "value": float("nan"), "error": "RuntimeError: boom"}
    rows = trial_rows(pd.DataFrame([TRIAL, failed]))
    assert rows[0] == {"trial": "3", "state": "complete", "dropout": "0.1",
                       "objective (iqm test_acc)": "85.00%", "mean ± std": "80.00% ± 2.00 (n=3)",
                       "95% CI (t)": "[75.00%, 83.00%]", "IQM [95% bootstrap CI]": "85.00% [82.00%, 88.00%]",
                       "note": ""}
    assert rows[1]["objective (iqm test_acc)"] == "—" and rows[1]["note"] == "RuntimeError: boom"


def test_the_best_row_names_the_configuration():
    assert best_rows(TRIAL) == [{"best trial": "3", "configuration": "dropout=0.1",
                                 "objective (iqm test_acc)": "85.00%", "mean ± std": "80.00% ± 2.00 (n=3)",
                                 "95% CI (t)": "[75.00%, 83.00%]"}]


def test_the_reported_best_trial_of_a_loss_search_has_the_lowest_loss(tmp_path):
    """A loss is minimised: the report's best trial is the one with the lowest test_loss of the trials table."""
    pytest.importorskip("optuna")
    from reglab.study.tune import TuneSettings, run_tune

    spec = StudySpec.from_dict({"name": "s", "seeds": 1, "arms": {"base": {}}, "base": {
        "data": {"name": "mnist1d", "train_subset": 128, "test_subset": 128},
        "model": {"name": "mlp", "options": {"widths": [8]}},
        "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "eval_train_samples": 64}}})
    result = run_tune(spec, TuneSettings([parse_param("lr=0.001,0.3")], sampler="grid", metric="test_loss"),
                      tmp_path, progress=False)
    values = dict(zip(result.trials["trial"], result.trials["value"], strict=True))
    assert len(values) == 2 and len(set(values.values())) == 2
    _, best, _ = tune_report(tmp_path)
    assert best[0]["best trial"] == str(min(values, key=values.get))
