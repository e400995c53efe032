"""Finished work is never lost to a second process, a missing checkpoint, a rebuild under the wrong spec or a
damaged index, and what a user got wrong (a path, a device, an edited file) is one line naming it."""

import fcntl
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reglab.cli import app
from reglab.cli.app import main
from reglab.config import ConfigError, RunConfig
from reglab.study import LocalExecutor, StudySpec, run_study
from reglab.study.store import StudyStore
from reglab.train import train_run
from reglab.train.rundir import DamagedFile, check_directory

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = {"data": {"name": "mnist1d", "train_subset": 128, "test_subset": 64},
        "model": {"name": "mlp", "options": {"widths": [8]}}, "optim": {"name": "momentum", "lr": 0.05},
        "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "eval_train_samples": 64}}
SPEC = {"name": "safety", "seeds": 2, "base": BASE, "arms": {"base": {}, "l2": {"regularize": {"l2": 0.001}}}}
TRAIN = ["train", "--dataset", "mnist1d", "--model", "mlp", "--epochs", "1", "--device", "cpu",
         "--set", "data.train_subset=128", "--set", "data.test_subset=64", "--set", "model.options.widths=[8]"]


def run_main(monkeypatch, capsys, args):
    monkeypatch.setattr(sys, "argv", ["reglab", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err.strip()


def test_a_run_directory_another_process_trains_in_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fd = os.open(run_dir, os.O_RDONLY)  # as a second `reglab train --out run` holds it
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(ConfigError, match="another reglab process is training this run"):
            train_run(RunConfig.from_dict(BASE), run_dir=run_dir)
        assert list(run_dir.iterdir()) == []  # nothing written
    finally:
        os.close(fd)
    assert train_run(RunConfig.from_dict(BASE), run_dir=run_dir).status == "done"  # the lock went with it


def test_a_finished_run_without_a_checkpoint_is_not_trained_again(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ck0"
    args = [*TRAIN, "--set", "train.checkpoint_every=0", "--out", str(out)]
    assert run_main(monkeypatch, capsys, args)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, err = run_main(monkeypatch, capsys, args)
    assert code == 2 and "holds a finished run (summary.json) and no checkpoint" in err and err.count("\n") == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_interrupted_reproduction_does_not_claim_to_keep_what_it_does_not(monkeypatch, capsys):
    import reglab.reproduce

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reglab.reproduce, "run", interrupted)
    code, err = run_main(monkeypatch, capsys, ["reproduce", "r1-mnist", "--quick"])
    assert code == 130 and "a reproduction writes its results when it finishes" in err


def test_an_interrupted_analysis_does_not_claim_to_resume(monkeypatch, capsys):
    import reglab.theory.analyze

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reglab.theory.analyze, "analyze_run", interrupted)
    code, err = run_main(monkeypatch, capsys, ["analyze", "runs/a"])
    assert code == 130 and "an analysis writes its results when it finishes" in err and "resume" not in err


def test_a_directory_the_os_will_not_make_is_the_users_one_line(tmp_path, monkeypatch):
    """What passes `check_directory` may still fail to be made (a virtual or read-only file system; /proc
    as root): named as the directory it was to be, not an OS error."""
    from reglab.train.rundir import make_directory

    def refuse(self, *args, **kwargs):
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(ConfigError, match=r"/x: cannot be an analysis directory \(Read-only file system\)$"):
        make_directory(tmp_path / "x", "an analysis directory")


def test_an_unwritable_output_folder_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "ro"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(locked))  # root writes anywhere
    with pytest.raises(ConfigError, match=r"ro/run: cannot be a run directory, .*ro is not writable"):
        check_directory(locked / "run", "a run directory")
    code, err = run_main(monkeypatch, capsys, [*TRAIN, "--out", str(locked / "run")])
    assert code == 2 and "is not writable" in err
    code, err = run_main(monkeypatch, capsys, ["reproduce", "r1-mnist", "--quick", "--out", str(locked / "r")])
    assert code == 2 and "is not writable" in err  # before the experiment, not after it


def test_a_permission_error_is_the_users_one_line_not_an_internal_error(monkeypatch, capsys):
    from reglab.cli import train as train_cli

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/config.json")

    monkeypatch.setattr(train_cli, "build_run_config", denied)
    code, err = run_main(monkeypatch, capsys, TRAIN)
    assert code == 2 and "Permission denied: '/somewhere/config.json'" in err and "internal" not in err


@pytest.fixture
def study(tmp_path):
    out = tmp_path / "study"
    run_study(StudySpec.from_dict(SPEC), out, executor=LocalExecutor(workers=1), progress=False)
    return out


def test_a_rebuild_under_another_spec_is_refused_and_force_keeps_runs_whose_directories_hold_the_new_config(study):
    other = StudySpec.from_dict({**SPEC, "base": {**BASE, "optim": {"name": "momentum", "lr": 0.1}}})
    (study / "study.db").unlink()
    with pytest.raises(ConfigError, match=r"--rebuild-index needs the spec the study was run with: 4 of its 4 "
                                          r"run directories hold other runs \(base__s0: optim.lr 0.05 there, "
                                          r"0.1 in SPEC\)"):
        run_study(other, study, progress=False, rebuild=True)
    assert not (study / "study.db").exists()  # nothing was changed
    rebuilt = run_study(StudySpec.from_dict(SPEC), study, progress=False, rebuild=True)
    assert rebuilt.executed == [] and len(rebuilt.skipped) == 4
    with StudyStore(study) as store:  # an index whose rows are stale while the directories hold the spec's runs
        store.conn.execute("UPDATE runs SET config = ?", (json.dumps(other.arm_config("base", 0).to_dict()),))
    forced = run_study(StudySpec.from_dict(SPEC), study, progress=False, force=True)
    assert forced.executed == [] and set(forced.runs["status"]) == {"done"}  # adopted from disk, not trained


def test_unreadable_json_in_the_index_is_a_damaged_index_that_a_rebuild_replaces(study):
    with sqlite3.connect(study / "study.db") as db:
        db.execute("UPDATE meta SET value = '{bad' WHERE key = 'spec'")
    with pytest.raises(DamagedFile, match=r"study.db: damaged \(.*\); rebuild it from the run directories"):
        StudyStore(study, create=False)
    rebuilt = run_study(StudySpec.from_dict(SPEC), study, progress=False, rebuild=True)
    assert rebuilt.executed == [] and (study / "study.db.damaged").exists()


def test_a_damaged_search_index_says_it_cannot_be_rebuilt_and_compare_does_not_rebuild_it(tmp_path):
    pytest.importorskip("optuna")
    from reglab.study.sweep import parse_param
    from reglab.study.tune import TuneSettings, add_best_arm, run_tune

    out = tmp_path / "search"
    spec = StudySpec.from_dict({**SPEC, "arms": {"base": {}}})
    run_tune(spec, TuneSettings([parse_param("dropout=0,0.1")], sampler="grid"), out, progress=False)
    for leftover in ("study.db-wal", "study.db-shm"):
        (out / leftover).unlink(missing_ok=True)
    (out / "study.db").write_bytes(b"not a database" * 100)
    with pytest.raises(DamagedFile, match="a search's index cannot be rebuilt from its run directories"):
        run_tune(spec, TuneSettings([parse_param("dropout=0,0.1")], sampler="grid"), out, progress=False)
    with pytest.raises(DamagedFile, match="a search's index cannot be rebuilt"):
        add_best_arm(spec, out)  # named, not sqlalchemy's DatabaseError
    with pytest.raises(ConfigError, match="holds a `reglab tune` search, whose index cannot be rebuilt"):
        run_study(spec, out, progress=False, rebuild=True)


def test_a_spec_whose_device_this_machine_lacks_is_refused_by_tune_as_by_compare(tmp_path):
    pytest.importorskip("optuna")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    toml = tmp_path / "cuda.toml"
    toml.write_text('name = "c"\nseeds = 1\n[base]\ndata = { name = "mnist1d", train_subset = 128 }\n'
                    'train = { epochs = 1, device = "cuda" }\n[arms.base]\n')
    for args in (["tune", str(toml), "--param", "dropout=0,0.2", "--out", str(tmp_path / "t")],
                 ["compare", str(toml), "--out", str(tmp_path / "c")]):
        result = CliRunner().invoke(app, args)
        assert isinstance(result.exception, ConfigError) and "sees no CUDA device" in str(result.exception)
        assert not (tmp_path / args[-1].rsplit("/", 1)[-1]).exists()


def test_an_edited_config_json_is_named_when_it_no_longer_validates(tmp_path):
    from reglab.train.loop import load_trained

    run_dir = tmp_path / "run"
    train_run(RunConfig.from_dict(BASE), run_dir=run_dir)
    stored = json.loads((run_dir / "config.json").read_text())
    stored["optim"]["lr"] = -1
    (run_dir / "config.json").write_text(json.dumps(stored))
    with pytest.raises(DamagedFile, match=r"run/config.json: optim.lr: Input should be greater than 0"):
        load_trained(run_dir)
    result = CliRunner().invoke(app, ["train", "--out", str(run_dir), "--extend", "--epochs", "2"])
    assert isinstance(result.exception, DamagedFile) and "config.json: optim.lr" in str(result.exception)
    (run_dir / "config.json").unlink()
    (run_dir / "config.json").mkdir()
    with pytest.raises(DamagedFile, match="config.json: not a file"):
        load_trained(run_dir)


def test_fetching_an_unknown_data_set_says_it_is_unknown():
    from reglab.data.fetch import fetch_dataset

    with pytest.raises(ConfigError, match="data set 'nosuch' is unknown"):
        fetch_dataset("nosuch")


@pytest.mark.parametrize("packed", [False, True])
def test_the_last_epoch_is_checkpointed_whatever_the_interval_so_a_rerun_trains_nothing(tmp_path, packed):
    import torch

    from reglab.train.loop import Trainer
    from reglab.train.packed import PackedTrainer

    cfg = RunConfig.from_dict(BASE).override({"train.epochs": 3, "train.checkpoint_every": 2})
    run_dir = tmp_path / "run"
    if packed:
        PackedTrainer([Trainer(cfg)]).fit([run_dir])
    else:
        train_run(cfg, run_dir=run_dir)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 3  # not epoch 2's
    metrics = (run_dir / "metrics.jsonl").read_text()
    again = train_run(cfg, run_dir=run_dir)
    assert len(again.epochs) == 3 and (run_dir / "metrics.jsonl").read_text() == metrics  # nothing trained again


def test_a_study_folder_without_its_index_points_to_the_rebuild(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs" / "a__s0").mkdir(parents=True)
    code, err = run_main(monkeypatch, capsys, ["report", str(tmp_path)])
    assert code == 2 and "no study.db; its runs/ are here" in err and "--rebuild-index" in err
    code, err = run_main(monkeypatch, capsys, ["report", str(tmp_path / "runs")])
    assert code == 2 and "is it a reglab study directory?" in err


def test_a_run_that_fails_before_writing_leaves_no_empty_directory(tmp_path, monkeypatch, capsys):
    """`reglab train --out` whose data does not fit fails in one line and removes the directory it made
    (one that existed before is kept)."""
    from conftest import run_cli

    argv = ["train", "--dataset", "mnist1d", "--set", "data.train_subset=99999", "--out"]
    code, _, err = run_cli(monkeypatch, capsys, *argv, str(tmp_path / "new" / "run"))
    assert code == 2 and "data.train_subset: 99999 exceeds" in err
    assert not (tmp_path / "new" / "run").exists() and (tmp_path / "new").is_dir()
    (tmp_path / "kept").mkdir()
    code, _, _ = run_cli(monkeypatch, capsys, *argv, str(tmp_path / "kept"))
    assert code == 2 and (tmp_path / "kept").is_dir()
