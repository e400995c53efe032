"""`reglab reproduce NAME` hands each flag to the run as its setting (the run itself replaced by a recorder)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

import reglab.reproduce
from reglab.cli import app


@pytest.fixture
def recorded(monkeypatch):
    calls = []

    def fake_run(name, settings, out):
        calls.append((name, settings, Path(out)))
        return {"preset": name, "figure": "Fig. 0", "source": "s", "claims": [], "notes": ["a note"]}

    monkeypatch.setattr(reglab.reproduce, "run", fake_run)
    return calls


def test_flags_become_the_settings(recorded, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    res = CliRunner().invoke(app, ["reproduce", "l1-l4", "--reduced", "--device", "cuda:1", "--data-dir", str(data),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    (name, settings, out), = recorded
    assert name == "l1-l4" and out == tmp_path / "o"
    assert (settings.quick, settings.reduced, settings.device, settings.data_dir) == (False, True, "cuda:1", data)


def test_defaults_are_the_full_run_on_the_cpu_into_reproductions(recorded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["reproduce", "escape", "--quick"])
    assert res.exit_code == 0, res.output
    (name, settings, out), = recorded
    assert name == "escape" and out == Path("reproductions") / "escape"
    assert (settings.quick, settings.reduced, settings.device, settings.data_dir) == (True, False, "cpu", None)
    assert "a note" in res.output
