"""Pool workers fork from a server that has done the heavy imports, yet behave as freshly spawned
ones: they see the driver's environment as it is when their pool starts, and die with the driver."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reglab.study.workers import start_server, worker_pool


def test_a_worker_sees_the_environment_of_its_pool_not_of_the_fork_server(monkeypatch):
    start_server()  # the fork server runs (started here or by an earlier test) with the old environment
    monkeypatch.setenv("REGLAB_WORKER_PROBE", "set after the server started")
    monkeypatch.delenv("HOME")
    with worker_pool(2) as workers:
        assert workers.submit(os.getenv, "REGLAB_WORKER_PROBE").result() == "set after the server started"
        assert workers.submit(os.getenv, "HOME").result() is None


DRIVER = textwrap.dedent("""
    import os, time
    from reglab.study.workers import worker_pool
    if __name__ == "__main__":
        pool = worker_pool(1)
        print(pool.submit(os.getpid).result(), flush=True)
        time.sleep(300)
""")


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_worker_exits_when_its_driver_is_killed(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(driver.stdout.readline())
        assert running(worker)
        driver.kill()  # SIGKILL: no cleanup in the driver
        driver.wait()
        deadline = time.monotonic() + 10
        while running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running(worker), "the worker outlived its driver"
    finally:
        driver.kill()
        driver.wait()
