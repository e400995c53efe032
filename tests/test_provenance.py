"""Every stored result records the command, the environment and the code version that made it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reglab import provenance
from reglab.config import RunConfig
from reglab.report import write_report
from reglab.study import StudySpec, run_study
from reglab.study.store import StudyStore
from reglab.train import train_run

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = {"data": {"name": "mnist1d", "train_subset": 128, "test_subset": 128},
        "model": {"name": "mlp", "options": {"widths": [8]}},
        "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "eval_train_samples": 64}}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_directory_records_each_start_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.COMMAND_VARIABLE, "reglab train --epochs 1")
    train_run(RunConfig.from_dict(BASE), run_dir=tmp_path)
    monkeypatch.setenv(provenance.COMMAND_VARIABLE, "reglab train --epochs 2 --extend")
    train_run(RunConfig.from_dict(BASE).override({"train.epochs": 2}), run_dir=tmp_path, extend=True)
    first, resumed = lines(tmp_path / "provenance.jsonl")
    assert (first["epoch"], first["command"]) == (0, "reglab train --epochs 1")
    assert (resumed["epoch"], resumed["command"]) == (1, "reglab train --epochs 2 --extend")
    assert first["code"] == provenance.code_version() and first["code"]["sources_sha256"] == provenance.sources_sha256()
    assert first["environment"]["device(s) used"] == "cpu" and first["environment"]["torch threads"] == "1"
    train_run(RunConfig.from_dict(BASE), run_dir=tmp_path / "other")
    train_run(RunConfig.from_dict(BASE).override({"train.epochs": 2}), run_dir=tmp_path / "other", resume=False)
    assert [r["epoch"] for r in lines(tmp_path / "other" / "provenance.jsonl")] == [0]  # started afresh


def test_the_cli_records_its_own_command_and_leaves_the_environment_as_it_was(tmp_path, monkeypatch, capsys):
    from reglab.cli.app import main

    monkeypatch.delenv(provenance.COMMAND_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--train-subset", "128", "--epochs", "1", "--device", "cpu", "--out", "run dir"]
    monkeypatch.setattr(sys, "argv", ["/some/path/reglab", *argv])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0, capsys.readouterr().err
    assert lines(tmp_path / "run dir" / "provenance.jsonl")[0]["command"] == (
        "reglab train --train-subset 128 --epochs 1 --device cpu --out 'run dir'")
    assert provenance.COMMAND_VARIABLE not in os.environ


def test_a_study_records_every_invocation_and_its_report_shows_the_last(tmp_path, monkeypatch):
    spec = StudySpec.from_dict({"name": "p", "seeds": 1, "base": BASE, "arms": {"a": {}}})
    for command in ("reglab compare p.toml", "reglab compare p.toml --workers 1"):
        monkeypatch.setenv(provenance.COMMAND_VARIABLE, command)
        result = run_study(spec, tmp_path, progress=False)
    with StudyStore(tmp_path, create=False) as store:
        invocations = store.invocations()
    assert [i["command"] for i in invocations] == ["reglab compare p.toml", "reglab compare p.toml --workers 1"]
    assert all(i["code"] == provenance.code_version() for i in invocations)
    page = write_report(result)["html"].read_text()
    assert "reglab compare p.toml --workers 1" in page and provenance.sources_sha256()[:16] in page
    assert "earlier commands" in page and "1, the first at" in page
    monkeypatch.setenv(provenance.COMMAND_VARIABLE, "reglab report p --correction bh")  # written again, later
    page = write_report(result)["html"].read_text()
    assert "report written by" in page and "reglab report p --correction bh (reglab " in page


def test_an_installed_copy_inside_another_repository_names_no_commit(tmp_path):
    """The commit of a repository that merely contains the package would be wrong: only the sources'
    hash identifies such a copy."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    other = tmp_path / "other"
    site = other / "lib" / "site-packages"
    shutil.copytree(Path(provenance.__file__).parent, site / "reglab", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(other), "-c", "user.name=x", "-c", "user.email=x@x"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "unrelated"], check=True)
    script = "import json, reglab.provenance as p; print(json.dumps(p.code_version()))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(site)})
    code = json.loads(done.stdout)
    assert code["git_commit"] is None and code["git_dirty"] is None
    assert code["sources_sha256"] == provenance.sources_sha256()  # the same sources, the same hash


def test_a_benchmark_run_with_out_stores_its_table_with_provenance(tmp_path, monkeypatch, capsys):
    from bench import bench_sha256, stored

    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setenv(provenance.COMMAND_VARIABLE, "")  # recorded, so that what `stored` sets is undone after
    monkeypatch.delenv(provenance.COMMAND_VARIABLE)
    monkeypatch.setattr(sys, "argv", ["bench/demo.py", "--device", "cpu"])
    stored(lambda: print("ratio reglab/reference: 1.23x"), "demo")
    assert capsys.readouterr().out == "ratio reglab/reference: 1.23x\n"  # still printed
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["output"] == (tmp_path / "demo.txt").read_text() == "ratio reglab/reference: 1.23x\n"
    assert saved["command"] == "python -m bench.demo --device cpu"
    assert saved["code"] == provenance.code_version() | {"bench_sha256": bench_sha256()}
    assert set(saved["environment"]) >= {"torch", "cpu", "torch threads"}
