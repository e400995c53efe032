"""The Ray executor on a real two-node Ray cluster on 127.0.0.1 (head + one worker node, 1 CPU each).

A study run on the cluster stores exactly what the same study run in-process stores (CPU, one torch
thread on both sides: bit-identical metrics); a worker process SIGKILLed mid-run is retried, resumes
from its checkpoint, and every run is in the store exactly once. The cluster is started with
``ray start --block`` subprocesses, stopped by signalling them (their Ray processes share their fate),
so nothing else on the machine is touched. About a minute on 2 busy cores, much of it Ray start-up.
"""

import importlib.util
import json
import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import TINY_STUDY, fake_cifar10, run_cli
from reglab import provenance
from reglab.cli import app
from reglab.cli.app import main
from reglab.config import ConfigError
from reglab.study import LocalExecutor, StudySpec, make_executor, run_study
from reglab.study.runner import StoreEvents

pytestmark = pytest.mark.ray
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray: pip install 'reglab[ray]'")

EPOCHS = 3
SPEC = StudySpec.from_dict({
    "name": "ray", "seeds": 2,
    "base": {"data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
             "model": {"name": "mlp", "options": {"widths": [16]}}, "optim": {"name": "momentum", "lr": 0.05},
             "train": {"epochs": EPOCHS, "batch_size": 64, "device": "cpu", "eval_train_samples": 128}},
    "arms": {"base": {}, "dropout": {"regularize": {"dropout": {"p": 0.2}}},
             "broken": {"data": {"name": "fn1d"}}},  # fails when its data loads: 20 samples < 256
})
VICTIM = "dropout__s1"  # the run whose worker is killed in its second epoch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node, each a `ray start --block` process; yields the head's address."""
    import ray

    logs, port = tmp_path_factory.mktemp("ray"), free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # a local test cluster
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]  # its `ray` script may be elsewhere (pip --target)
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0"]
    nodes = [("head", [*ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={logs}",
                       f"--ray-client-server-port={free_port()}", *common]),
             ("worker", [*ray_cli, "start", f"--address={address}", *common])]
    procs = []
    try:
        for name, command in nodes:
            with open(logs / f"{name}.log", "w") as log:
                procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
            if name == "head":
                wait_for(lambda: port_open(port), f"the Ray head (log: {logs / 'head.log'})")
        ray.init(address=address, logging_level="WARNING")
        try:
            wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == 2, f"two Ray nodes (logs: {logs})")
        finally:
            ray.shutdown()
        yield address
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The study run in-process with one torch thread (as each Ray run uses with one CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_study(SPEC, tmp_path_factory.mktemp("local"), executor=LocalExecutor(), progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def progress(monkeypatch) -> list[tuple[str, int]]:
    """(run id, epoch) of every progress event the driver received."""
    seen: list[tuple[str, int]] = []
    plain = StoreEvents.epoch

    def record(self, task, metrics):
        seen.append((task.run_id, metrics["epoch"]))
        plain(self, task, metrics)

    monkeypatch.setattr(StoreEvents, "epoch", record)
    return seen


def store_rows(out: Path) -> list[dict]:
    conn = sqlite3.connect(out / "study.db")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM runs")]
    conn.close()
    return rows


def metrics(study) -> list[dict]:
    epochs = study.epochs.drop(columns=[c for c in study.epochs if "seconds" in c])
    return epochs.sort_values(["run_id", "epoch"]).to_dict("records")


def assert_same_study(result, reference) -> None:
    """Every run once, with the reference's status, error and per-epoch metrics (bit for bit)."""
    rows = store_rows(result.path)
    assert sorted(r["run_id"] for r in rows) == sorted(reference.runs["run_id"])
    assert all(r["attempts"] == 1 for r in rows)
    columns = ["run_id", "status", "error", "final_test_acc", "final_test_loss"]
    ours = result.runs[columns].sort_values("run_id").fillna("").to_dict("records")
    assert ours == reference.runs[columns].sort_values("run_id").fillna("").to_dict("records")
    assert metrics(result) == metrics(reference)


@needs_ray
def test_a_study_on_the_cluster_equals_the_study_run_locally(cluster, reference, progress, tmp_path):
    from reglab.study.ray_executor import RayExecutor

    result = run_study(SPEC, tmp_path, executor=RayExecutor(address=cluster), progress=False)
    status = dict(zip(result.runs["run_id"], result.runs["status"], strict=True))
    assert status == {f"{arm}__s{s}": "failed" if arm == "broken" else "done"
                      for arm in SPEC.arms for s in (0, 1)}
    assert "exceeds the 20 train samples of fn1d" in result.runs.set_index("run_id").loc["broken__s0", "error"]
    assert_same_study(result, reference)
    trained = [f"{arm}__s{s}" for arm in ("base", "dropout") for s in (0, 1)]
    assert sorted(progress) == sorted((run, e) for run in trained for e in range(1, EPOCHS + 1))


def mailbox_killer_hook(marker: Path):
    """A Ray worker setup hook: the progress mailbox's process SIGKILLs itself at its 5th take, once."""

    def hook() -> None:
        from reglab.study import ray_executor

        plain, calls = ray_executor.Mailbox.take, []

        def dying(self):
            calls.append(1)
            if len(calls) == 5 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return plain(self)

        ray_executor.Mailbox.take = dying

    return hook


@needs_ray
def test_a_lost_progress_mailbox_loses_no_run(cluster, reference, tmp_path):
    """Until 2026-11-28 its death ended the study with an internal error; it is restarted now."""
    from reglab.study.ray_executor import RayExecutor

    marker = tmp_path / "killed"
    executor = RayExecutor(address=cluster, runtime_env={"worker_process_setup_hook": mailbox_killer_hook(marker)})
    result = run_study(SPEC, tmp_path / "study", executor=executor, progress=False)
    assert marker.exists()
    assert_same_study(result, reference)


@needs_ray
def test_device_of_a_cluster_run_is_left_to_its_node(cluster, monkeypatch, capsys, tmp_path):
    """`--device cuda` on a cluster is judged by its nodes, not by the driver's machine (until 2026-11-29 a
    driver without a GPU refused it): here no node has a GPU, which Ray's resources say."""
    (tmp_path / "tiny.toml").write_text(TINY_STUDY)
    code, _, err = run_cli(monkeypatch, capsys, "compare", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "s"),
                           "--executor", "ray", "--address", cluster, "--device", "cuda", "--gpus-per-run", "1")
    assert code == 2 and "error: cpus_per_run, gpus_per_run: no node of the Ray cluster has 1 CPUs and 1 GPUs" in err
    code, _, err = run_cli(monkeypatch, capsys, "compare", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "s"),
                           "--executor", "ray", "--address", cluster, "--device", "gpu")
    assert code == 2 and err.startswith("error: train.device: "), err  # its spelling is still checked


@needs_ray
def test_workers_find_the_data_where_the_drivers_reglab_data_says(cluster, monkeypatch, tmp_path):
    """The nodes were started without $REGLAB_DATA; the driver's reaches their runs (until 2026-11-29 a
    run on a `ray start` cluster searched only its node's own environment and failed: data not found)."""
    from reglab.study.ray_executor import RayExecutor

    fake_cifar10(tmp_path / "shared" / "cifar10", per_file=8)
    monkeypatch.setenv("REGLAB_DATA", str(tmp_path / "shared"))
    spec = StudySpec.from_dict({
        "name": "shared-data", "seeds": 1,
        "base": {"data": {"name": "cifar10", "train_subset": 32, "test_subset": 8},
                 "model": {"name": "mlp", "options": {"widths": [8]}},
                 "train": {"epochs": 1, "batch_size": 16, "device": "cpu"}},
        "arms": {"base": {}}})
    result = run_study(spec, tmp_path / "study", executor=RayExecutor(address=cluster), progress=False)
    assert result.runs[["status", "error"]].fillna("").to_dict("records") == [{"status": "done", "error": ""}]


@needs_ray
def test_a_node_running_other_reglab_sources_fails_its_runs_saying_so(cluster, monkeypatch, tmp_path):
    """One study, one code: a run on a node whose reglab differs from the driver's fails with a one-line
    error naming both hashes (here the driver's hash is changed; until 2026-11-29 the run trained)."""
    from reglab.study.ray_executor import RayExecutor

    monkeypatch.setattr(provenance, "sources_sha256", lambda: "0123456789ab" + "0" * 52)
    spec = StudySpec.from_dict({**SPEC.to_dict(), "seeds": 1, "arms": {"base": {}}})
    result = run_study(spec, tmp_path, executor=RayExecutor(address=cluster), progress=False)
    (status, error), = result.runs[["status", "error"]].itertuples(index=False)
    assert status == "failed" and re.fullmatch(
        r"code: node \S+ runs other reglab sources than the driver \(sha256 [0-9a-f]{12} vs 0123456789ab\); "
        r"install the same reglab on every node", error), error


def timing_hook(folder: Path):
    """A Ray worker setup hook: each run writes into `folder` when its training started and ended."""

    def hook() -> None:
        import reglab.study.executors as executors

        plain = executors.run_task

        def timed(task, on_epoch):
            start = time.monotonic()  # one clock for every process of the machine
            try:
                return plain(task, on_epoch)
            finally:
                (folder / f"{task.run_id}.{os.getpid()}").write_text(f"{start} {time.monotonic()}")

        executors.run_task = timed

    return hook


@needs_ray
def test_runs_train_no_more_at_once_than_the_cpus_allow(cluster, tmp_path):
    """Until 2026-11-29 a run waited for each of its progress messages to arrive, and Ray lends the CPU of a
    task that waits to the next task: the two 1-CPU nodes trained three or four runs at once."""
    from reglab.study.ray_executor import RayExecutor

    folder = tmp_path / "times"
    folder.mkdir()
    executor = RayExecutor(address=cluster, runtime_env={"worker_process_setup_hook": timing_hook(folder)})
    run_study(SPEC, tmp_path / "study", executor=executor, progress=False)
    spans = [tuple(map(float, path.read_text().split())) for path in folder.iterdir()]
    assert len(spans) == len(SPEC.arms) * 2
    assert max(sum(start <= t < end for start, end in spans) for t, _ in spans) <= 2


@needs_ray
def test_a_run_size_no_node_has_is_refused_naming_the_options(cluster, tmp_path):
    from reglab.study.ray_executor import RayExecutor

    nodes = r"\(its live nodes: 1 CPUs and 0 GPUs, 1 CPUs and 0 GPUs\)$"
    with pytest.raises(ConfigError, match=r"^cpus_per_run, gpus_per_run: no node of the Ray cluster has 8 CPUs and "
                                          r"0 GPUs for a run " + nodes):
        run_study(SPEC, tmp_path, executor=RayExecutor(address=cluster, cpus_per_run=8), progress=False)
    assert {r["status"] for r in store_rows(tmp_path)} == {"pending"}  # nothing ran, nothing lost


def killer_hook(marker: Path):
    """A Ray worker setup hook: the worker training VICTIM SIGKILLs itself in epoch 2, once."""

    def hook() -> None:
        import reglab.study.executors as executors

        plain = executors.run_task

        def dying(task, on_epoch):
            def report(metrics):
                on_epoch(metrics)
                if task.run_id == VICTIM and metrics["epoch"] == 2 and not marker.exists():
                    marker.write_text(str(os.getpid()))
                    os.kill(os.getpid(), signal.SIGKILL)

            return plain(task, report)

        executors.run_task = dying

    return hook


@needs_ray
def test_a_killed_worker_is_retried_and_its_run_resumes(cluster, reference, progress, tmp_path):
    from reglab.study.ray_executor import RayExecutor

    marker = tmp_path / "killed"
    executor = RayExecutor(address=cluster, runtime_env={"worker_process_setup_hook": killer_hook(marker)})
    result = run_study(SPEC, tmp_path / "study", executor=executor, progress=False)
    assert marker.exists()  # the worker did die mid-run
    assert_same_study(result, reference)  # none lost, none duplicated, metrics as if never killed
    # the worker died in epoch 2, before its checkpoint: the retry resumed after epoch 1 (a resume is recorded
    # with its epoch), and reported epochs 2 and 3 (what the dead worker had sent last may be lost)
    lines = (tmp_path / "study" / "runs" / VICTIM / "provenance.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    assert [e for run, e in progress if run == VICTIM][-2:] == [2, 3]


@needs_ray
def test_sigterm_ends_a_study_on_ray_as_ctrl_c_does(cluster, monkeypatch, capsys, tmp_path):
    """`ray.init` replaces the SIGTERM handler with an exit of its own: until 2026-11-29 SIGTERM ended
    `reglab compare --executor ray` with exit code 1, a stack dump and no word on resuming."""
    from reglab.study.ray_executor import RayExecutor

    def terminated(*args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler interrupts this
        raise AssertionError("SIGTERM did not interrupt the study")

    monkeypatch.setattr(RayExecutor, "_run", terminated)  # the driver, connected to Ray, is waiting for runs
    (tmp_path / "tiny.toml").write_text(TINY_STUDY)
    code, _, err = run_cli(monkeypatch, capsys, "compare", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "s"),
                           "--executor", "ray", "--address", cluster)
    assert code == 130 and "interrupted; rerun the same command to resume" in err, err


@needs_ray
def test_sweep_on_the_cluster_from_the_command_line(cluster, monkeypatch, tmp_path):
    """A search connects to Ray once for all its trials (until 2026-11-29 once per trial, each a new Ray
    job whose workers imported torch again; a local Ray was started again for each trial)."""
    import ray

    inits, plain = [], ray.init
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: inits.append(args) or plain(*args, **kwargs))
    path = tmp_path / "tiny.toml"
    path.write_text('name = "tiny"\nseeds = 1\n[base]\ndata = { name = "mnist1d", train_subset = 256, '
                    'test_subset = 256 }\nmodel.options.widths = [16]\ntrain = { epochs = 1, batch_size = 64, '
                    'device = "cpu", eval_train_samples = 128 }\n[arms.base]\n')
    args = ["sweep", str(path), "--param", "dropout=0.0,0.2", "--out", str(tmp_path / "out"), "--executor", "ray",
            "--address", cluster, "--cpus-per-run", "1", "--gpus-per-run", "0", "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(inits) == 1 and not ray.is_initialized()
    rows = store_rows(tmp_path / "out")
    assert sorted((r["run_id"], r["status"]) for r in rows) == [("dropout_0.0__s0", "done"),
                                                                  ("dropout_0.2__s0", "done")]
    for run in ("dropout_0.0__s0", "dropout_0.2__s0"):  # the driver's command, not the Ray worker's argv
        lines = (tmp_path / "out" / "runs" / run / "provenance.jsonl").read_text().splitlines()
        assert [json.loads(line)["command"] for line in lines] == [provenance.command()]


@pytest.mark.parametrize("command", [["compare"], ["sweep", "--param", "dropout=0.0,0.2"]])
def test_a_local_ray_checks_the_data_before_anything_is_written(command, monkeypatch, capsys, tmp_path):
    """Without --address the runs train on this machine, so its data is checked first, as for the local
    executor (until 2026-11-29 Ray started and every run failed alike)."""
    (tmp_path / "mnist.toml").write_text(TINY_STUDY.replace('"mnist1d"', '"mnist"'))  # not here: a newcomer's cache
    code, _, err = run_cli(monkeypatch, capsys, *command[:1], str(tmp_path / "mnist.toml"), *command[1:], "--out",
                           str(tmp_path / "s"), "--executor", "ray")
    assert code == 2 and err.strip().endswith("data.name: 'mnist' is not on this machine; `reglab data fetch mnist` "
                                              "gets it (or set data.download=true)"), err
    assert not (tmp_path / "s").exists()


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    message = "executor ray: needs the ray package: pip install 'reglab[ray]'"
    with pytest.raises(ConfigError) as err:
        make_executor("ray")
    assert str(err.value) == message
    monkeypatch.setattr(sys, "argv", ["reglab", "compare", "--executor", "ray"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and capsys.readouterr().err.strip() == f"error: {message}"


@needs_ray
def test_address_auto_where_no_ray_answers_is_refused_before_anything_is_written(monkeypatch, capsys, tmp_path):
    """`auto` is the address `ray.init` would take ($RAY_ADDRESS here), checked as HOST:PORT is: until
    2026-11-29 a head that had gone kept `ray.init` retrying for minutes, after study.db was written."""
    from reglab.study.ray_executor import RayExecutor

    port = free_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    message = rf"^address: cannot connect to Ray at 'auto', that is [\d.]+:{port} \(ConnectionRefusedError: "
    with pytest.raises(ConfigError, match=message):
        RayExecutor(address="auto")
    (tmp_path / "tiny.toml").write_text(TINY_STUDY)
    code, _, err = run_cli(monkeypatch, capsys, "compare", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "s"),
                           "--executor", "ray", "--address", "auto")
    assert code == 2 and re.match(message, err.removeprefix("error: ")), err
    assert not (tmp_path / "s").exists()


@needs_ray
def test_executor_options_are_checked(cluster, monkeypatch):
    from reglab.study.ray_executor import RayExecutor

    monkeypatch.setenv("RAY_ADDRESS", cluster)  # what auto stands for
    ray = make_executor("ray", address="auto", cpus_per_run=2, gpus_per_run=0.25, workers=None)
    assert isinstance(ray, RayExecutor) and (ray.address, ray.cpus_per_run, ray.gpus_per_run) == ("auto", 2, 0.25)
    with pytest.raises(ValueError, match=r"^executor local: does not take address \(it takes: workers, device\)$"):
        make_executor("local", address="auto")
    with pytest.raises(ConfigError, match=r"^gpus_per_run: must be 0 or more \(got -1\)$"):
        RayExecutor(gpus_per_run=-1)
    with pytest.raises(ConfigError, match=r"^gpus_per_run: above 1 must be a whole number \(got 1.5\)$"):
        RayExecutor(gpus_per_run=1.5)
    with pytest.raises(ConfigError, match=r"^workers: must be at least 1 \(got 0\)$"):
        RayExecutor(workers=0)
    for bad in (math.inf, 1e-5):
        with pytest.raises(ConfigError, match=r"^cpus_per_run: must be at least 0.0001"):
            RayExecutor(cpus_per_run=bad)
    with pytest.raises(ConfigError, match=r"^gpus_per_run: must be 0 or more \(got inf\)$"):
        RayExecutor(gpus_per_run=math.inf)
    with pytest.raises(ConfigError, match=r"^cpus_per_run: Ray shares resources in steps of 0.0001 \(got 0.00015\)$"):
        RayExecutor(cpus_per_run=0.00015)
    port = free_port()  # nothing listens there: refused at once, where ray.init would retry for minutes
    with pytest.raises(ConfigError, match=rf"^address: cannot connect to Ray at '127.0.0.1:{port}' \("):
        RayExecutor(address=f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match=r"^address: expected auto or HOST:PORT \(got 'nowhere'\)$"):
        RayExecutor(address="nowhere")
