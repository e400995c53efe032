"""The regularization section from the command line: `reglab train … --json`, and config errors."""

import json
import sys

import pytest
from typer.testing import CliRunner

from reglab.cli import app, main
from reglab.config import ConfigError, RegularizeConfig

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = ["train", "--dataset", "mnist1d", "--model", "mlp", "--epochs", "1", "--device", "cpu",
        "--set", "model.options.widths=[16]", "--set", "data.train_subset=256",
        "--set", "data.test_subset=256"]


def test_json_exposes_the_resolved_regularization_config():
    flags = ["--l1", "1e-5", "--l2", "1e-4", "--dropout", "0.3", "--ema", "0.999", "--optimizer", "adamw",
             "--weight-decay", "0.01", "--label-smoothing", "0.1", "--mixup", "0.2", "--grad-clip", "1.5",
             "--sam", "0.05", "--patience", "2", "--val-split", "0.25", "--schedule", "cosine",
             "--warmup", "0.5",
             "--set", "regularize.penalize=all", "--set", "regularize.dropblock.block_size=5"]
    result = CliRunner().invoke(app, [*TINY, *flags, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    reg = out["config"]["regularize"]
    assert set(reg) == set(RegularizeConfig.model_fields)  # every field, defaults included
    assert reg["l1"] == 1e-5 and reg["l2"] == 1e-4 and reg["ema"] == 0.999 and reg["penalize"] == "all"
    assert reg["dropout"] == {"p": 0.3, "layers": None}
    assert reg["label_smoothing"] == 0.1 and reg["mixup"] == 0.2 and reg["cutmix"] == 0.0
    assert reg["grad_clip"] == 1.5 and reg["sam_rho"] == 0.05
    assert reg["early_stopping"] == {"patience": 2, "monitor": "val_loss", "restore_best": True}
    assert reg["stochastic_depth"]["rate"] == 0.0 and reg["dropblock"] == {"p": 0.0, "block_size": 5}
    optim = out["config"]["optim"]
    assert optim["name"] == "adamw" and optim["weight_decay"] == 0.01
    assert optim["schedule"]["name"] == "cosine" and optim["schedule"]["warmup_epochs"] == 0.5
    assert out["status"] == "done" and len(out["epochs"]) == 1


@pytest.mark.parametrize("flags, field", [
    (["--dropout", "1.5"], "regularize.dropout.p"),
    (["--l2", "-1"], "regularize.l2"),
    (["--l1", "-0.1"], "regularize.l1"),
    (["--ema", "1.0"], "regularize.ema"),
    (["--label-smoothing", "1.0"], "regularize.label_smoothing"),
    (["--set", "regularize.stochastic_depth.rate=1.0"], "regularize.stochastic_depth.rate"),
    (["--patience", "3"], "regularize.early_stopping.monitor"),  # val_loss without --val-split
    (["--mixup", "0.2", "--cutmix", "1.0"], "regularize.mixup"),
    (["--stochastic-depth", "0.2"], "regularize.stochastic_depth"),  # mlp has no residual blocks
    (["--dataset", "fn1d", "--set", "data.train_subset=16", "--set", "data.test_subset=16",
      "--label-smoothing", "0.1"], "regularize.label_smoothing"),  # a regression set: no classes to smooth
])
def test_config_errors_name_the_field(flags, field):
    result = CliRunner().invoke(app, [*TINY, *flags])
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError), result.output
    assert field in str(result.exception)


def test_main_prints_one_line_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["reglab", *TINY, "--dropout", "1.5"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "regularize.dropout.p" in err
    assert issubclass(ConfigError, ValueError)
