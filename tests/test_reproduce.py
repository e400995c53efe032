"""`reglab reproduce`: the registry, the written files (strict JSON, escaped self-contained HTML), the CLI."""

import base64
import json
import math
import subprocess
import sys

import pytest
from rich.console import Console

from reglab.config import ConfigError
from reglab.reproduce import Claim, Outcome, Preset, Settings, get_preset, presets
from reglab.reproduce.common import new_figure
from reglab.reproduce.output import claims_table, write

NAMES = {"dropout-1d", "condensation", "teacher-student", "r1-mnist", "escape", "sample-size", "l1-l4",
         "interpolation", "dropout-table", "effective-ratio", "seed000"}


def reglab(*args: str, cwd=None) -> subprocess.CompletedProcess:
    code = "import sys; from reglab.cli import main; sys.argv[0] = 'reglab'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_every_issue_preset_is_registered():
    assert {p.name for p in presets()} == NAMES


def test_unknown_preset_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="unknown reproduction 'nope'.*teacher-student"):
        get_preset("nope")


def _outcome() -> Outcome:
    fig, (ax,) = new_figure(1)
    ax.plot([0, 1], [1, 0])
    return Outcome(figures={"line": fig}, numbers={"x": math.nan, "y": [1.5, math.inf]},
                   claims=[Claim("<script>alert(1)</script> holds", "1 < 2 & 3", True),
                           Claim("untestable", "-", None), Claim("wrong", "0", False)],
                   notes=["note <b>bold</b>"], settings={"epochs": 1})


def test_write_produces_png_strict_json_and_escaped_self_contained_html(tmp_path):
    toy = Preset("toy", "Toy <i>title</i>", "somewhere", lambda s: _outcome(), source="a source")
    data = write(toy, _outcome(), Settings(quick=True), tmp_path)
    png = (tmp_path / "line.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    loaded = json.loads((tmp_path / "results.json").read_text())  # strict: NaN/inf became null
    assert loaded == json.loads(json.dumps(data))
    assert loaded["numbers"] == {"x": None, "y": [1.5, None]}
    assert [c["verdict"] for c in loaded["claims"]] == ["agree", "n/a", "disagree"]
    assert loaded["source"] == "a source, somewhere" and loaded["quick"] is True
    html = (tmp_path / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "1 &lt; 2 &amp; 3" in html and "note &lt;b&gt;bold&lt;/b&gt;" in html and "<i>" not in html
    assert base64.b64encode(png).decode() in html  # the figure is embedded, nothing is linked
    assert "src=\"http" not in html and "<link" not in html


def test_claims_table_has_one_row_per_claim_with_its_verdict():
    data = {"preset": "toy", "source": "s", "claims": [
        {"claim": c.claim, "measured": c.measured, "verdict": c.verdict} for c in _outcome().claims]}
    console = Console(record=True, width=200)
    console.print(claims_table(data))
    lines = [line for line in console.export_text().splitlines() if "│" in line]
    assert len(lines) == 3
    assert [line.split("│")[3].strip() for line in lines] == ["agree", "n/a", "disagree"]
    assert "<script>alert(1)</script> holds" in lines[0]  # markup-escaped, printed verbatim


def test_cli_lists_presets_and_rejects_an_unknown_one(tmp_path):
    listing = reglab("reproduce", "--list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    for name in NAMES:
        assert name in listing.stdout
    bad = reglab("reproduce", "nope", cwd=tmp_path)
    assert bad.returncode == 2
    assert "unknown reproduction 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_runs_a_quick_preset_into_the_default_folder(tmp_path):
    proc = reglab("reproduce", "dropout-1d", "--quick", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "reproductions" / "dropout-1d"
    assert {p.name for p in out.iterdir()} == {"dropout_1d.png", "results.json", "report.html", "README.md"}
    readme = (out / "README.md").read_text()
    assert "`reglab reproduce dropout-1d --quick`" in readme and "![dropout_1d](dropout_1d.png)" in readme
    assert "source vs reglab" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert {"without dropout", "dropout p=0.3"} <= set(results["numbers"])
    assert all(results["numbers"][k]["mean_loss_rise"]["n"] == 2 for k in ("without dropout", "dropout p=0.3"))


