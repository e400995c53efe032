"""Every bad input is one clear line (exit 2, no traceback, nothing written); internal errors say so;
help shows defaults; progress and interruption are spoken to logs; `import reglab.cli` needs no torch."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

import reglab.theory.training
from conftest import TINY_STUDY as TINY
from conftest import run_cli
from reglab.cli.app import main

RUN = ["--train-subset", "128", "--set", "data.test_subset=128", "--batch-size", "64", "--epochs", "1",
       "--device", "cpu"]

# (argv, a string the one-line error must contain); FILE, DIR, TOML, BAD, BAD.json are in the working dir
BAD_INPUTS = [
    *([(["train", "--device", "cuda"], "train.device: 'cuda'")] if not torch.cuda.is_available() else []),
    (["train", "--device", "banana"], "train.device: unknown device 'banana'"),
    (["train", "--out", "FILE"], "FILE: is a file"),
    (["train", "--extend"], "--extend: needs --out, the run directory to extend"),
    (["train", "--config", "DIR"], "DIR: is a directory"),
    (["compare", "--workers", "0"], "'--workers'"),
    (["train", "--lr", "inf"], "optim.lr: Input should be a finite number"),
    (["train", "--lr", "nan"], "optim.lr: Input should be a finite number"),
    (["train", "--data-dir", "/nonexistent"], "data.data_dir: '/nonexistent' is not a directory"),
    (["train", "--epochs", "0"], "train.epochs"),
    (["train", "--dropout", "1.5"], "regularize.dropout.p"),
    (["train", "--optimizer", "bogus"], "optim.name"),
    (["train", "--batch-size", "-1"], "train.batch_size"),
    (["train", "--norm", "bogus"], "model.norm"),
    (["train", "--set", "nosuch.key=1"], "nosuch"),
    (["train", "--set", "optim.lr"], "--set 'optim.lr': expected KEY=VALUE"),
    (["train", "--config", "missing.toml"], "missing.toml: no such file"),
    (["train", "--config", "BAD"], "BAD: invalid TOML"),
    (["train", "--dataset", "nosuch", *RUN], "data.name: unknown data set 'nosuch'"),
    (["train", "--model", "nosuch", *RUN], "model.name"),
    (["train", "--set", "model.options.widths=[-5]", *RUN], "model.options.widths"),
    (["train", "--nosuch"], "No such option: --nosuch"),
    (["compare", "nosuchpreset"], "'nosuchpreset' is neither a TOML file nor a preset"),
    (["compare", "TOML", "--device", "banana"], "'banana'"),
    (["compare", "TOML", "--out", "FILE", "--workers", "1"], "FILE: is a file"),
    (["compare", "TOML", "--seeds", "0"], "seeds"),
    (["compare", "NODATADIR"], "arms.l2.data.data_dir: '/nonexistent' is not a directory"),
    (["compare", "TOML", "--epochs", "0"], "train.epochs"),
    (["compare", "TOML", "--executor", "nosuch"], "executor: unknown 'nosuch'"),
    (["sweep", "TOML", "--param", "dropout=:b:"], "--param 'dropout=:b:'"),
    (["sweep", "TOML", "--param", "dropout=0:0.5:3", "--workers", "0"], "'--workers'"),
    (["report", "/nonexistent"], "/nonexistent"),
    (["export", "DIR", "--table", "bogus"], "table: unknown 'bogus'"),
    (["export", "/nonexistent"], "/nonexistent: no study.db"),
    (["analyze", "/nonexistent"], "/nonexistent: no such run directory"),
    (["analyze", "DIR"], "DIR: no model.pt or checkpoint.pt"),
    (["train", "--config", "BAD.json"], "BAD.json: invalid JSON"),
    (["reproduce", "nosuch"], "unknown reproduction 'nosuch'"),
    (["sweep", "TOML", "--param", "nosuch=1:2:3"], "unknown name 'nosuch'"),
    (["sweep", "TOML", "--param", "dropout=0:2:3"], "regularize.dropout.p: Input should be less than 1"),
    (["compare", "TOML", "--pack", "0"], "--pack"),
    (["compare", "TOML", "--seeds", "-3"], "seeds: needs at least one seed"),
    (["report"], "Missing argument"),
    (["train", "--set", "optim.betas=[2,0]"], "betas must lie in [0, 1)"),
    (["train", "--ema", "1.5"], "regularize.ema"),
    (["train", "--val-split", "1"], "data.val_split"),
    (["train", "--patience", "3"], "set data.val_split > 0"),
    (["train", "--mixup", "1", "--cutmix", "1"], "exclusive"),
    (["train", "--schedule", "bogus"], "optim.schedule.name"),
    (["train", "--seed", "-1"], "seed: "),
    (["train", "--loss", "bogus"], "train.loss"),
    (["train", "--objective", "bogus"], "train.objective"),
    (["train", "--objective", "drop-r1"], "holds for the mse loss only"),
    (["train", "--train-subset", "0"], "data.train_subset"),
    (["train", "--epochs", "abc"], "'--epochs'"),
    (["train", "--set", "train.device=cuda:7"], "train.device: 'cuda:7'"),
    (["train", "--dataset", "fn1d", "--epochs", "1", "--device", "cpu"], "train.loss: cross-entropy needs"),
    (["train", "--dataset", "fn1d", "--train-subset", "100", "--loss", "mse", "--device", "cpu"],
     "data.train_subset: 100 exceeds the 20 train samples of fn1d"),
    (["train", *RUN, "--out", "FILE/sub"], "FILE/sub: cannot be a run directory, FILE is a file"),
    (["compare", "TOML", "--out", "FILE/sub", "--workers", "1"], "FILE/sub: cannot be a study directory"),
    (["sweep", "TOML", "--param", "dropout=0.1", "--out", "FILE/sub"], "FILE/sub: cannot be a study directory"),
    (["compare", "TOML", "--executor", "local", "--address", "auto", "--workers", "1"],
     "executor local: does not take address"),
    (["reproduce", "dropout-1d", "--quick", "--out", "FILE"], "FILE: is a file"),
    (["reproduce", "dropout-1d", "--quick", "--device", "gpu"], "train.device: unknown device 'gpu'"),
    *([(["reproduce", "dropout-1d", "--quick", "--device", "cuda"], "train.device: 'cuda'")]
      if not torch.cuda.is_available() else []),
]

# the same on a finished run r1, a finished study st1 and a run d2 whose config.json is not an object
BAD_INPUTS_FINISHED = [
    (["train", *RUN, "--out", "d2"], "d2/config.json: not a JSON object"),
    (["analyze", "d2"], "d2/config.json: not a JSON object"),
    (["train", *RUN, "--out", "st1"], "st1: holds a study (study.db), not a run"),
    (["compare", "TOML", "--workers", "1", "--out", "r1"], "r1: holds a run (config.json), not a study"),
    (["sweep", "TOML", "--param", "lr=0.1", "--workers", "1", "--out", "r1"], "r1: holds a run (config.json)"),
    (["report", "st1", "--out", "FILE"], "FILE: is a file"),
    (["report", "st1", "--out", "FILE/x"], "FILE/x: cannot be a report directory, FILE is a file"),
    (["export", "st1", "--table", "epochs", "--out", "FILE/x.csv"], "FILE: is a file"),
    (["export", "st1", "--out", "DIR"], "DIR: is a directory; the table is written to a file, e.g. DIR/runs.csv"),
    (["analyze", "r1", "--out", "FILE", "--hessian"], "FILE: is a file"),
    (["analyze", "r1", "--out", "FILE/x", "--hessian"], "FILE/x: cannot be an analysis directory"),
    *([(["analyze", "r1", "--device", "cuda"], "train.device: 'cuda'")] if not torch.cuda.is_available() else []),
    (["analyze", "r1", "--device", "gpu"], "train.device: unknown device 'gpu'"),
    (["analyze", "r1", "--landscape", "1d", "--points", "0"], "points: need at least 2 (got 0)"),
    (["analyze", "r1", "--condensation", "--threshold", "2"], "threshold: a cosine similarity in (0, 1]"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("not a directory")
    (tmp_path / "DIR").mkdir()
    (tmp_path / "BAD").write_text("this is = = not toml")
    (tmp_path / "BAD.json").write_text("{not json")
    (tmp_path / "TOML").write_text(TINY)
    (tmp_path / "NODATADIR").write_text(TINY.replace("[arms.l2]", '[arms.l2]\ndata.data_dir = "/nonexistent"'))
    return tmp_path


def listing(path):
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run r1 and study st1, made once (each test copies them into its working dir)."""
    root = tmp_path_factory.mktemp("finished")
    (root / "TOML").write_text(TINY)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for argv in (["train", *RUN, "--out", "r1"], ["compare", "TOML", "--workers", "1", "--pack", "off",
                                                      "--out", "st1"]):
            patch.setattr(sys, "argv", ["reglab", *argv])
            with pytest.raises(SystemExit) as exit_:
                main()
            assert exit_.value.code == 0
    return root


@pytest.fixture
def finished_workdir(finished, workdir):
    for name in ("r1", "st1"):
        shutil.copytree(finished / name, workdir / name)
    shutil.copytree(finished / "r1", workdir / "d2")
    (workdir / "d2" / "config.json").write_text("[1, 2]")
    return workdir


def assert_one_clear_line_exit_2_and_nothing_written(argv, named, workdir, monkeypatch, capsys):
    before = listing(workdir)
    code, _, err = run_cli(monkeypatch, capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert "Traceback" not in err and "internal error" not in err
    assert listing(workdir) == before


@pytest.mark.parametrize(("argv", "named"), BAD_INPUTS, ids=[" ".join(a[:3]) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line_exit_2_and_writes_nothing(argv, named, workdir, monkeypatch, capsys):
    assert_one_clear_line_exit_2_and_nothing_written(argv, named, workdir, monkeypatch, capsys)


@pytest.mark.parametrize(("argv", "named"), BAD_INPUTS_FINISHED, ids=[" ".join(a) for a, _ in BAD_INPUTS_FINISHED])
def test_bad_input_on_a_finished_run_or_study_is_one_clear_line(argv, named, finished_workdir, monkeypatch, capsys):
    assert_one_clear_line_exit_2_and_nothing_written(argv, named, finished_workdir, monkeypatch, capsys)


def test_analyze_on_device_auto_picks_one(finished_workdir, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "analyze", "r1", "--device", "auto", "--landscape", "1d",
                           "--points", "3", "--out", "a")
    assert code == 0, err
    assert (finished_workdir / "a" / "analysis.json").exists()


def test_a_study_where_every_run_failed_lists_their_errors_and_exits_1(workdir, monkeypatch, capsys):
    (workdir / "FAIL").write_text(TINY.replace("train_subset = 128", "train_subset = 1, val_split = 0.5"))
    monkeypatch.setattr("reglab.cli.options.fits_data", lambda data_json: None)  # the CLI would refuse it first
    code, out, err = run_cli(monkeypatch, capsys, "compare", "FAIL", "--workers", "1", "--pack", "off",
                             "--out", "s")
    assert code == 1, err
    assert "internal error" not in err and "csv: s/report/runs.csv" in out
    assert all(f"{run} failed: ConfigError: data.val_split" in err for run in ("base__s0", "l2__s1")), err
    failures = [line for line in err.splitlines() if " failed: " in line]
    assert len(failures) >= 4 and all(line.endswith("leaves none for training") for line in failures)  # unwrapped


def test_long_errors_are_not_wrapped_off_a_terminal(workdir, monkeypatch, capsys):
    missing = "/nonexistent/" + "a-long-directory-name/" * 5
    _, _, err = run_cli(monkeypatch, capsys, "train", "--data-dir", missing)
    assert len(err.strip().splitlines()) == 1 and len(err.strip()) > 120


def test_a_runs_own_config_json_is_accepted_as_config(workdir, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "train", *RUN, "--out", "first")
    assert code == 0, err
    assert err.splitlines() and err.splitlines()[0].startswith("epoch 1/1: loss ")  # progress off a terminal
    code, _, err = run_cli(monkeypatch, capsys, "train", "--config", "first/config.json", "--out", "second")
    assert code == 0, err
    assert (workdir / "first" / "config.json").read_text() == (workdir / "second" / "config.json").read_text()
    code, _, err = run_cli(monkeypatch, capsys, "train", "--config", "first/config.json", "--lr", "0.5",
                           "--out", "first")
    assert code == 2 and "optim.lr 0.001 -> 0.5" in err


def test_extend_without_a_config_continues_the_runs_own_config(workdir, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "train", *RUN, "--dropout", "0.2", "--out", "run")
    assert code == 0, err
    started = json.loads((workdir / "run" / "config.json").read_text())
    code, _, err = run_cli(monkeypatch, capsys, "train", "--out", "run", "--extend", "--epochs", "2")
    assert code == 0, err
    assert json.loads((workdir / "run" / "config.json").read_text()) == {
        **started, "train": {**started["train"], "epochs": 2}}
    lines = (workdir / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    code, _, err = run_cli(monkeypatch, capsys, "train", "--out", "run", "--extend", "--epochs", "3", "--lr", "0.5")
    assert code == 2 and "optim.lr" in err  # options given still change the config, and only the budget may


def test_internal_errors_are_not_user_errors_and_debug_shows_the_traceback(workdir, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise KeyError("arm")

    monkeypatch.setattr(reglab.theory.training, "train_run", broken)
    code, _, err = run_cli(monkeypatch, capsys, "train", *RUN)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "internal error" in err and "KeyError: 'arm'" in err and "test_reliability_cli.py" in err
    assert "--debug" in err and "Traceback" not in err
    code, _, err = run_cli(monkeypatch, capsys, "--debug", "train", *RUN)
    assert code == 1 and "Traceback (most recent call last)" in err and 'raise KeyError("arm")' in err


def test_interrupted_command_says_that_rerunning_resumes(workdir, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reglab.theory.training, "train_run", interrupted)
    code, _, err = run_cli(monkeypatch, capsys, "train", *RUN)
    assert code == 130 and "rerun the same command to resume" in err


def test_sigterm_during_a_command_ends_it_as_ctrl_c_does_and_the_handler_is_restored(workdir, monkeypatch, capsys):
    import os
    import signal
    import time

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler interrupts this
        raise AssertionError("SIGTERM did not interrupt the command")

    monkeypatch.setattr(reglab.theory.training, "train_run", terminated)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = run_cli(monkeypatch, capsys, "train", *RUN)
    assert code == 130 and "rerun the same command to resume" in err
    assert signal.getsignal(signal.SIGTERM) is before


def test_help_shows_defaults_literally(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "compare", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "[default: 2 with ≥ 2 cores, else 1]" in text and "[default: studies/<name>]" in text


def test_study_progress_is_printed_off_a_terminal_as_runs_start(workdir, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "compare", "TOML", "--workers", "1", "--out", "s")
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0] == "running 4 runs, keeping 0 finished ones"
    assert lines.index("base__s0: started") < next(i for i, x in enumerate(lines) if x.startswith("base__s0: done"))


@pytest.mark.parametrize("argv", [["--help"], ["reproduce", "--list"], ["presets"]])
def test_help_and_listings_import_neither_torch_nor_matplotlib(argv):
    code = ("import sys; from reglab.cli import main; sys.argv = ['reglab', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'matplotlib', 'pandas') if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == "[]", proc.stderr
    assert proc.stdout.strip()


@pytest.mark.slow
def test_sigterm_keeps_finished_epochs_and_says_that_rerunning_resumes(tmp_path):
    import json
    import signal
    import time

    args = ["train", *RUN, "--epochs", "30", "--out", str(tmp_path / "run")]
    code = "import sys; from reglab.cli import main; sys.argv[0] = 'reglab'; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "rerun the same command to resume" in err, err
    kept = metrics.read_text().count("\n")
    assert 2 <= kept < 30
    again = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == list(range(1, 31))
