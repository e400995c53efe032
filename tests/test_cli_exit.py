"""The `reglab` console script exits without Python's teardown, yet runs the exit handlers, flushes its
output, keeps the exit code and waits for a running non-daemon thread."""

import subprocess
import sys

SCRIPT = """
import atexit, sys, threading, time
from reglab.cli import run
atexit.register(lambda: print("exit handler ran", flush=False))
if {thread}:
    def late():
        time.sleep(0.5)
        open({marker!r}, "w").write("done")
    threading.Thread(target=late).start()
sys.argv = ["reglab", *{args!r}]
run()
"""


def reglab(tmp_path, *args: str, thread: bool = False) -> subprocess.CompletedProcess:
    code = SCRIPT.format(thread=thread, marker=str(tmp_path / "thread-finished"), args=list(args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_output_is_complete_and_exit_handlers_run(tmp_path):
    proc = reglab(tmp_path, "presets")
    assert proc.returncode == 0, proc.stderr
    assert "quickstart" in proc.stdout  # piped, so block-buffered: flushed before the process ended
    assert proc.stdout.rstrip().endswith("exit handler ran")


def test_exit_code_of_an_input_error_is_kept(tmp_path):
    proc = reglab(tmp_path, "compare", "no-such-study.toml")
    assert proc.returncode == 2
    assert "no-such-study.toml" in proc.stderr and "exit handler ran" in proc.stdout


def test_a_running_non_daemon_thread_is_waited_for(tmp_path):
    proc = reglab(tmp_path, "presets", thread=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "thread-finished").read_text() == "done"
