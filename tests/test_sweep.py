"""Sweeps: `--param` syntax and `reglab sweep` (the grid case of `reglab tune`) end to end."""

import pytest
from typer.testing import CliRunner

from reglab.cli import app
from reglab.config import ConfigError
from reglab.study import load_study
from reglab.study.sweep import parse_param

BASE = {
    "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
    "model": {"name": "mlp", "options": {"widths": [16]}},
    "optim": {"name": "momentum", "lr": 0.05},
    "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 128},
}


@pytest.mark.parametrize(("text", "path", "values"), [
    ("dropout=0.0:0.6:7", "regularize.dropout.p", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)),
    ("l2=log:1e-5:1e-2:4", "regularize.l2", (1e-5, 1e-4, 1e-3, 1e-2)),
    ("wd = 0.1,0.01", "optim.weight_decay", (0.1, 0.01)),
    ("lr=0.5", "optim.lr", (0.5,)),
    ("train.epochs=2:10:5", "train.epochs", (2, 4, 6, 8, 10)),  # whole steps stay integers
    ("train.epochs=0:1:3", "train.epochs", (0.0, 0.5, 1.0)),
    ("optim.name=sgd,adamw", "optim.name", ("sgd", "adamw")),
    ("stochastic_depth=0:0.2:2", "regularize.stochastic_depth.rate", (0.0, 0.2)),
    ("label_smoothing=0.1,0.2", "regularize.label_smoothing", (0.1, 0.2)),
    ("ema=0.9,0.99", "regularize.ema", (0.9, 0.99)),
    ("l1=1e-4", "regularize.l1", (1e-4,)),
])
def test_param_values(text, path, values):
    param = parse_param(text)
    assert param.path == path and param.values == values
    assert all(type(v) is type(w) for v, w in zip(param.values, values, strict=True))


@pytest.mark.parametrize(("text", "message"), [
    ("dropout", r"--param 'dropout': expected NAME=VALUES"),
    ("=0.1", r"expected NAME=VALUES"),
    ("dropuot=0.1", r"--param 'dropuot=0.1': unknown name 'dropuot' \(short names: dropout, "),
    ("dropout=0:1", r"--param 'dropout=0:1': a range is a:b:n or log:a:b:n"),
    ("dropout=0:1:1", r"number of values must be an integer of at least 2 \(got 1\)"),
    ("dropout=0:1:2.5", r"integer of at least 2 \(got 2.5\)"),
    ("l2=log:0:1e-2:3", r"--param 'l2=log:0:1e-2:3': log ranges need a > 0 and b > 0"),
    ("dropout=x:1:3", r"'x' is not a number"),
    ("lr=0.1,,0.2", r"--param 'lr=0.1,,0.2': empty value in the comma list"),
    ("dropout=0.1,0.2,0.10", r"--param 'dropout=0.1,0.2,0.10': 0.1 appears twice"),  # two arms of one name
    ("dropout=0.2:0.2:3", r"0.2 appears twice"),
    ("model.options.widths=[8],[16],[8]", r"\[8\] appears twice"),
])
def test_bad_params_are_one_line_errors(text, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_param(text)
    assert "\n" not in str(err.value)


def tiny_toml(path, epochs: int = 2, lr: float = 0.05):
    path.write_text(f'name = "tiny"\nseeds = 1\n[base]\noptim.lr = {lr}\ndata = {{ name = "mnist1d", '
                    'train_subset = 256, test_subset = 256 }\nmodel.options.widths = [16]\ntrain = { epochs = '
                    f'{epochs}, batch_size = 64, device = "cpu", eval_train_samples = 128 }}\n[arms.base]\n')
    return path


def test_sweep_cli_runs_the_grid_on_the_local_executor(tmp_path):
    path = tiny_toml(tmp_path / "tiny.toml")
    out = tmp_path / "out"
    args = ["sweep", str(path), "--param", "dropout=0:0.2:2", "--param", "lr=0.01,0.1", "--out", str(out),
            "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ran 4 runs" in result.output.replace("\n", " ")
    study = load_study(out)
    assert study.arms == ["dropout=0.0,lr=0.01", "dropout=0.0,lr=0.1", "dropout=0.2,lr=0.01", "dropout=0.2,lr=0.1"]
    assert (study.runs["status"] == "done").all() and len(study.epochs) == 4 * 2
    assert (out / "report" / "report.html").exists() and study.spec.name == "tiny sweep"
    assert study.baseline == "dropout=0.0,lr=0.01"
    config = study.spec.arm_config("dropout=0.2,lr=0.1", 0)
    assert config.regularize.dropout.p == 0.2 and config.optim.lr == 0.1 and config.model.options["widths"] == [16]
    again = CliRunner().invoke(app, args)  # finished: nothing runs again
    assert again.exit_code == 0 and "ran 0 runs, kept 4" in again.output.replace("\n", " ")

    bad = CliRunner().invoke(app, ["sweep", str(path), "--param", "dropout=0:1", "--out", str(out)])
    assert bad.exit_code != 0 and "a range is a:b:n" in str(bad.exception)


def test_sweep_into_a_compare_study_is_refused_and_keeps_its_runs(tmp_path):
    path, out = tiny_toml(tmp_path / "tiny.toml", epochs=1), tmp_path / "out"
    assert CliRunner().invoke(app, ["compare", str(path), "--out", str(out), "--workers", "1"]).exit_code == 0
    summary = (out / "runs" / "base__s0" / "summary.json").read_text()
    bad = CliRunner().invoke(app, ["sweep", str(path), "--param", "dropout=0.1", "--out", str(out), "--force"])
    assert bad.exit_code != 0 and str(bad.exception) == (
        f"{out}: holds a `reglab compare` study, not a search; use another --out")
    assert [p.name for p in (out / "runs").iterdir()] == ["base__s0"]
    assert (out / "runs" / "base__s0" / "summary.json").read_text() == summary
    assert load_study(out).runs["run_id"].tolist() == ["base__s0"]


def test_compare_into_a_search_is_refused_and_keeps_its_trials(tmp_path):
    path, out = tiny_toml(tmp_path / "tiny.toml", epochs=1), tmp_path / "out"
    assert CliRunner().invoke(app, ["sweep", str(path), "--param", "dropout=0.1", "--out", str(out),
                                    "--workers", "1"]).exit_code == 0
    trials = sorted(p.name for p in (out / "runs").iterdir())
    bad = CliRunner().invoke(app, ["compare", str(path), "--out", str(out), "--force"])
    assert bad.exit_code != 0 and "holds a `reglab tune`/`sweep` search, not a compare study" in str(bad.exception)
    assert sorted(p.name for p in (out / "runs").iterdir()) == trials


def test_sweep_where_every_run_diverges_writes_its_report(tmp_path):
    path, out = tiny_toml(tmp_path / "diverging.toml", epochs=1, lr=1e30), tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(path), "--param", "dropout=0,0.1", "--out", str(out),
                                      "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "no trial completed" in result.output and "ran 2 runs" in result.output
    assert "no trial completed" in (out / "report" / "report.html").read_text()
    (out / "report" / "report.html").unlink()
    again = CliRunner().invoke(app, ["report", str(out)])
    assert again.exit_code == 0, again.output
    assert "no trial completed" in (out / "report" / "report.html").read_text()


def test_docs_list_every_short_name():
    """docs/studies.md lists each `SHORT_NAMES` key a `--param` accepts."""
    from pathlib import Path

    from reglab.study.sweep import SHORT_NAMES

    text = (Path(__file__).parents[1] / "docs" / "studies.md").read_text()
    assert [name for name in SHORT_NAMES if f"`{name}`" not in text] == []
