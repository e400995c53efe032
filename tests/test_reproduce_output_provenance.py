"""What a reproduction's files record: the code version it started from, the rerun command with every flag,
the budget it really ran, the README's command lines and choices, the checked text of a claim row."""

import json
from pathlib import Path

from reglab.reproduce import Claim, Outcome, Preset, Settings
from reglab.reproduce.output import budget, command, write

CODE = {"reglab": "0.0.0", "git_commit": "0123456789abcdef", "git_dirty": True, "sources_sha256": "ab" * 32}


def _toy(outcome: Outcome) -> Preset:
    return Preset("toy", "Toy", "somewhere", lambda s: outcome, source="a source")


def test_checked_is_kept_only_in_a_disagreements_row():
    rows = [Claim("c", "1", verdict, criterion="rule", checked="the units").row() for verdict in (True, None, False)]
    assert [r["checked"] for r in rows] == ["", "", "the units"]
    assert [r["criterion"] for r in rows] == ["rule"] * 3


def test_results_keep_the_code_version_the_run_started_from(tmp_path):
    data = write(_toy(Outcome()), Outcome(), Settings(quick=True), tmp_path, code=CODE)
    assert data["code"] == CODE
    assert json.loads((tmp_path / "results.json").read_text())["code"] == CODE
    assert "commit" in (tmp_path / "README.md").read_text()


def test_rerun_command_names_device_and_data_folder():
    toy = _toy(Outcome())
    assert command(toy, Settings()) == "reglab reproduce toy"
    assert command(toy, Settings(device="cuda:1", data_dir=Path("/data/mnist"))) == \
        "reglab reproduce toy --device cuda:1 --data-dir /data/mnist"
    assert command(toy, Settings(reduced=True, device="cuda")) == "reglab reproduce toy --reduced --device cuda"


def test_budget_is_reduced_only_when_the_preset_cut_something():
    """--reduced on a preset without a reduced budget runs its full setting: "full"."""
    cut = Outcome(reduced="2 seeds")
    assert budget(Outcome(), Settings(reduced=True)) == "full"
    assert budget(cut, Settings(reduced=True)) == "reduced"
    assert budget(cut, Settings(quick=True)) == "quick"
    assert budget(Outcome(), Settings()) == "full"


def test_readme_gives_the_command_as_run_the_rerun_command_and_the_choices(tmp_path, monkeypatch):
    monkeypatch.setenv("REGLAB_COMMAND", "reglab reproduce toy --quick --out somewhere")
    outcome = Outcome(choices={"optimizer": "plain GD", "loss": "half MSE"}, reduced=None)
    data = write(_toy(outcome), outcome, Settings(quick=True), tmp_path / "toy", code=CODE)
    assert data["command"] == "reglab reproduce toy --quick --out somewhere"
    readme = (tmp_path / "toy" / "README.md").read_text()
    assert "Command: `reglab reproduce toy --quick --out somewhere` (quick version" in readme
    assert "to run it again: `reglab reproduce toy --quick`." in readme
    assert "- optimizer: plain GD\n- loss: half MSE\n" in readme
