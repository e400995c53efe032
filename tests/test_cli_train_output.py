"""`reglab train` off a terminal: its table puts each metric under its own header, the time line splits
training from evaluation, and rerunning into --out without --extend takes the options given, not the
directory's stored config."""

import json
import sys
from types import SimpleNamespace

import pytest

from reglab.cli.app import main
from reglab.train import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = ["train", "--train-subset", "128", "--set", "data.test_subset=128", "--batch-size", "64",
       "--set", "model.options.widths=[8]", "--device", "cpu"]


def run_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["reglab", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_each_metric_is_under_its_own_header_and_the_time_is_split(tmp_path, monkeypatch, capsys):
    """On a fake clock that only training (3 s an epoch) and each evaluation pass (5 s; two an epoch: the
    train subset and the test set) advance, 2 epochs are 6.0 s of training and 20.0 s of evaluation."""
    from reglab.train import loop

    now = [0.0]
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    train_epoch, evaluate = Trainer._train_epoch, Trainer.evaluate

    def slow_train_epoch(self):
        now[0] += 3.0
        return train_epoch(self)

    def slow_evaluate(self, *args, **kwargs):
        now[0] += 5.0
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", slow_train_epoch)
    monkeypatch.setattr(Trainer, "evaluate", slow_evaluate)
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
