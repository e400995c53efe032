"""`reglab train` off a terminal: its table puts each metric under its own header, the time line splits
training from evaluation, and rerunning into --out without --extend takes the options given, not the
directory's stored config."""

import json

import pytest

from conftest import fake_training_clock, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = ["train", "--train-subset", "128", "--set", "data.test_subset=128", "--batch-size", "64",
       "--set", "model.options.widths=[8]", "--device", "cpu"]


def test_each_metric_is_under_its_own_header_and_the_time_is_split(tmp_path, monkeypatch, capsys):
    """On a fake clock that only training (3 s an epoch) and each evaluation pass (5 s; two an epoch: the
    train subset and the test set) advance, 2 epochs are 6.0 s of training and 20.0 s of evaluation."""
    fake_training_clock(monkeypatch, train_seconds=3.0, eval_seconds=5.0)
    monkeypatch.setenv("COLUMNS", "200")  # the whole table on one line per row
    code, out, err = run_cli(monkeypatch, capsys, *RUN, "--epochs", "2", "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "(training 6.0 s, evaluation 20.0 s)" in out
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lines = [line.replace("┃", "│") for line in out.splitlines()]  # rich draws the header with heavy bars
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.count("│") > 2]
    header, body = rows[0], rows[1:]
    assert header[0] == "epoch" and {"train_loss", "test_loss", "test_acc", "lr", "seconds"} <= set(header)
    assert len(body) == len(records) == 2
    for row, record in zip(body, records, strict=True):
        cells = dict(zip(header, row, strict=True))
        assert cells["epoch"] == str(record["epoch"]) and cells["seconds"] == "13"
        for key in header[1:]:
            assert cells[key] == f"{record[key]:.4g}", key


def test_rerunning_without_extend_is_checked_against_the_options_given(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    code, _, err = run_cli(monkeypatch, capsys, *RUN, "--epochs", "1", "--dropout", "0.2", "--out", out)
    assert code == 0, err
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    code, _, err = run_cli(monkeypatch, capsys, *RUN, "--epochs", "1", "--out", out)  # no --dropout this time
    assert code == 2 and "another config (regularize.dropout.p 0.2 -> 0.0)" in err, err
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
