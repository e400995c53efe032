"""Command-line options: a flag given as 0, 0.0 or False still overrides the config, `--set` is applied
after the flags, malformed `--set` and out-of-range analysis options are one line naming the option,
bounds are inclusive, and `reglab` alone prints its help with exit code 0."""

import os

import pytest

from conftest import run_cli
from reglab.cli.analyze import check_range
from reglab.cli.options import build_run_config
from reglab.config import ConfigError
from reglab.provenance import COMMAND_VARIABLE


def test_falsy_flags_override_the_config_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("[regularize]\nl2 = 0.01\ndropout = { p = 0.3 }\n[optim]\nlr = 0.5\nweight_decay = 0.1\n"
                      "[train]\nbatch_size = 64\namp = true\n")
    flags = {"dropout": 0.0, "l2": 0.0, "weight_decay": 0.0, "batch_size": 0, "amp": False, "lr": None}
    cfg = build_run_config(config, flags, [])
    assert cfg.regularize.dropout.p == 0.0 and cfg.regularize.l2 == 0.0 and cfg.optim.weight_decay == 0.0
    assert cfg.train.batch_size == 0 and cfg.train.amp is False
    assert cfg.optim.lr == 0.5  # a flag not given (None) leaves the file's value


def test_set_is_applied_after_the_named_flags():
    cfg = build_run_config(None, {"lr": 0.1, "dropout": 0.2}, ["optim.lr=0.3"])
    assert cfg.optim.lr == 0.3 and cfg.regularize.dropout.p == 0.2


def test_analysis_bounds_are_inclusive():
    check_range("--points", 1001, 2, 1001)
    check_range("--points", 2, 2, 1001)
    check_range("--seed", 0, 0, 2**64 - 1)
    with pytest.raises(ConfigError, match=r"^--points: need at most 1001 \(got 1002\)$"):
        check_range("--points", 1002, 2, 1001)
    with pytest.raises(ConfigError, match=r"^--points: need at least 2 \(got 1\)$"):
        check_range("--points", 1, 2, 1001)


@pytest.mark.parametrize(("argv", "named"), [
    (["train", "--set", "=0.1"], "--set '=0.1': expected KEY=VALUE"),
    (["train", "--set", " =0.1"], "--set ' =0.1': expected KEY=VALUE"),  # a blank key, not a field error
    (["analyze", "RUN", "--batch-size", "0"], "--batch-size: need at least 1 (got 0)"),
    (["analyze", "RUN", "--samples", "0"], "--samples: need at least 1 (got 0)"),
])
def test_malformed_options_are_one_line_naming_the_option(argv, named, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "RUN").mkdir()  # refused before anything is loaded from it
    code, _, err = run_cli(monkeypatch, capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert [p.name for p in tmp_path.rglob("*")] == ["RUN"]


def test_reglab_alone_prints_its_help_and_exits_0(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys)
    assert code == 0, err
    assert out.startswith("Usage: ") and "compare" in out and "train" in out


def test_a_command_line_set_by_an_outer_reglab_is_left_as_it_was(monkeypatch, capsys):
    monkeypatch.setenv(COMMAND_VARIABLE, "reglab reproduce r1-mnist")
    code, _, err = run_cli(monkeypatch, capsys, "presets")
    assert code == 0, err
    assert os.environ[COMMAND_VARIABLE] == "reglab reproduce r1-mnist"
