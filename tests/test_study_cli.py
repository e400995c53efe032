"""`reglab compare` end to end: the default preset with one epoch, a user spec, one-line errors."""

import subprocess
import sys
from html import escape

import pandas as pd
import pytest

from reglab.cli.app import main
from reglab.study import load_spec

TINY = """
name = "tiny cli"
seeds = 2
[base]
data = { name = "mnist1d", train_subset = 256, test_subset = 256 }
model.options.widths = [16]
train = { epochs = 2, batch_size = 64, device = "cpu", eval_train_samples = 128 }
[arms.base]
[arms."<b>x</b>"]
regularize.dropout.p = {p}
"""


def reglab(*args: str, cwd=None) -> subprocess.CompletedProcess:
    code = "import sys; from reglab.cli import main; sys.argv[0] = 'reglab'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_default_compare_runs_quickstart_and_writes_the_report(tmp_path):
    proc = reglab("compare", "--epochs", "1", cwd=tmp_path)  # default preset, default workers and out dir
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "studies" / "quickstart"
    spec = load_spec("quickstart")
    for arm in spec.arms:
        assert arm in proc.stdout
    assert f"report: {out.relative_to(tmp_path)}/report/report.html" in proc.stdout.replace("\n", "")
    html = (out / "report" / "report.html").read_text()
    assert all(escape(arm) in html for arm in spec.arms)
    assert (out / "report" / "report.md").exists()
    runs = pd.read_csv(out / "report" / "runs.csv")
    assert len(runs) == len(spec.arms) * len(spec.seed_list) and (runs["status"] == "done").all()
    assert (runs["epochs"] == 1).all()


def test_compare_a_spec_file_then_refuse_a_changed_one(tmp_path, capsys, monkeypatch):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace("{p}", "0.2"))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["reglab", "compare", str(path), "--out", str(out), "--workers", "1"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "<b>x</b>" in printed and "verdict" in printed and "report:" in printed
    assert escape("<b>x</b>") in (out / "report" / "report.html").read_text()

    path.write_text(TINY.replace("{p}", "0.3"))
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "spec changed" in err and "--force" in err

    monkeypatch.setattr(sys, "argv", ["reglab", "compare", str(path), "--out", str(out), "--workers", "1",
                                      "--force"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    assert "ran 2 runs, kept 2 finished ones" in capsys.readouterr().out.replace("\n", " ")


def test_spec_errors_are_one_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("{p}", "1.5"))
    monkeypatch.setattr(sys, "argv", ["reglab", "compare", str(path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == \
        "error: arms.<b>x</b>.regularize.dropout.p: Input should be less than 1 (got 1.5)"
    assert not (tmp_path / "o").exists()  # nothing ran
