"""A study killed with SIGKILL mid-run resumes: nothing duplicated or lost, metrics bit-identical (CPU).

The driver runs in a subprocess whose epochs are slowed by a sleep (numerics untouched) so that the
kill reliably lands after the first run has finished and while a later run is part-way through.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from reglab.study import StudySpec, run_study

EPOCHS = 5
SPEC = {
    "name": "resume", "seeds": 2,
    "base": {"data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
             "model": {"name": "mlp", "options": {"widths": [16]}}, "optim": {"name": "momentum", "lr": 0.05},
             "regularize": {"dropout": {"p": 0.1}},
             "train": {"epochs": EPOCHS, "batch_size": 64, "device": "cpu", "eval_train_samples": 128}},
    "arms": {"base": {}, "ema": {"regularize": {"ema": 0.9}}},
}

DRIVER = """
import json, sys, time
import reglab.study.executors as executors
from reglab.study import StudySpec, run_study

plain = executors.run_task
def slow(task, on_epoch):  # sleep after each epoch: the kill lands mid-run, numbers are unchanged
    return plain(task, lambda metrics: (on_epoch(metrics), time.sleep(0.3)))
executors.run_task = slow
run_study(StudySpec.from_dict(json.loads(sys.argv[1])), sys.argv[2], progress=False)
"""


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_until_mid_run(out: Path, proc: subprocess.Popen, timeout: float = 60) -> str:
    """Wait until the first run has finished and a later one has ≥ 2 epochs; return that run's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        runs = out / "runs"
        first_done = (runs / "base__s0" / "summary.json").exists()
        for later in ("ema__s0", "base__s1", "ema__s1"):
            d = runs / later
            if first_done and lines(d / "metrics.jsonl") >= 2 and not (d / "summary.json").exists():
                return later
        time.sleep(0.02)
    raise AssertionError(f"the driver never reached the middle of a later run (exit code {proc.poll()})")


def without_seconds(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in records]


def test_sigkill_then_rerun_completes_like_an_uninterrupted_study(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(SPEC), str(out)], env=env)
    try:
        mid = wait_until_mid_run(out, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(out / "study.db")
    status = dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
    conn.close()
    assert status["base__s0"] == "done" and status[mid] == "running"
    assert not (out / "runs" / mid / "summary.json").exists()

    resumed = run_study(StudySpec.from_dict(SPEC), out, progress=False)
    assert "base__s0" in resumed.skipped and mid in resumed.executed
    straight = run_study(StudySpec.from_dict(SPEC), tmp_path / "straight", progress=False)

    assert len(resumed.runs) == len(straight.runs) == 4 and resumed.runs["run_id"].is_unique
    assert (resumed.runs["status"] == "done").all()
    conn = sqlite3.connect(out / "study.db")
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM runs").fetchone() == (4, 4)
    attempts = dict(conn.execute("SELECT run_id, attempts FROM runs").fetchall())
    conn.close()
    assert attempts["base__s0"] == 1 and attempts[mid] == 2
    for run_id in straight.runs["run_id"]:
        killed = without_seconds(out / "runs" / run_id / "metrics.jsonl")
        assert [e["epoch"] for e in killed] == list(range(1, EPOCHS + 1))  # one line per epoch
        assert killed == without_seconds(tmp_path / "straight" / "runs" / run_id / "metrics.jsonl")
    cols = ["run_id", "final_test_acc", "final_test_loss", "best_test_acc", "fluctuation"]
    assert resumed.runs[cols].equals(straight.runs[cols])
