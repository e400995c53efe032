"""The rerun command of a reproduction is one shell command line, whatever its data folder is called."""

import shlex
from pathlib import Path

from reglab.reproduce import Outcome, Preset, Settings
from reglab.reproduce.output import command


def test_rerun_command_quotes_a_data_folder_with_a_space():
    toy = Preset("toy", "Toy", "somewhere", lambda s: Outcome())
    rerun = command(toy, Settings(data_dir=Path("/my data/mnist")))
    assert shlex.split(rerun) == ["reglab", "reproduce", "toy", "--data-dir", "/my data/mnist"]
    assert command(toy, Settings(data_dir=Path("/data"))) == "reglab reproduce toy --data-dir /data"
