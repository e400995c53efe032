"""What `reglab.provenance.record` stores besides the code version: the command line as a shell would
read it back, every device used, and the time in UTC."""

import shlex
import sys
from datetime import datetime, timedelta

from reglab import provenance


def test_without_the_cli_the_command_is_argv_quoted_so_that_a_shell_reads_it_back(monkeypatch):
    argv = ["/opt/my scripts/run.py", "--out", "run dir", "--set", "optim.lr=0.1"]
    monkeypatch.delenv(provenance.COMMAND_VARIABLE, raising=False)
    monkeypatch.setattr(sys, "argv", argv)
    assert shlex.split(provenance.command()) == argv
    monkeypatch.setenv(provenance.COMMAND_VARIABLE, "reglab train --epochs 1")  # the CLI's own line wins
    assert provenance.command() == "reglab train --epochs 1"


def test_every_device_used_is_named():
    assert provenance.environment(["cpu", "cuda:1"])["device(s) used"] == "cpu, cuda:1"
    assert provenance.environment([])["device(s) used"] == "—"


def test_the_record_time_is_utc():
    before = datetime.now().astimezone()
    stamp = datetime.fromisoformat(provenance.record(["cpu"])["time"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs(stamp - before) < timedelta(minutes=5)
