"""`reglab reproduce`: the registry, the written files (strict JSON, escaped self-contained HTML), the CLI."""

import base64
import json
import math
import subprocess
import sys

import pytest
from rich.console import Console

from reglab import provenance
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
                   claims=[Claim("<script>alert(1)</script> holds", "1 < 2 & 3", True, source="2 > 1"),
                           Claim("untestable", "-", None), Claim("wrong", "0", False, source="1",
                                                                  criterion="equal", checked="the units")],
                   notes=["note <b>bold</b>"], settings={"epochs": 1})


def test_write_produces_png_strict_json_and_escaped_self_contained_html(tmp_path):
    toy = Preset("toy", "Toy <i>title</i>", "somewhere", lambda s: _outcome(), source="a source")
    data = write(toy, _outcome(), Settings(quick=True), tmp_path)
    png = (tmp_path / "line.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    loaded = json.loads((tmp_path / "results.json").read_text())  # strict: NaN/inf became null
    assert loaded == json.loads(json.dumps(data))
    assert loaded["numbers"] == {"x": None, "y": [1.5, None]}
    assert [c["verdict"] for c in loaded["claims"]] == ["agree", "not run", "disagree"]
    assert loaded["claims"][2] == {"claim": "wrong", "source": "1", "reglab": "0", "verdict": "disagree",
                                   "criterion": "equal", "checked": "the units"}
    assert loaded["source"] == "a source, somewhere" and loaded["quick"] is True and loaded["budget"] == "quick"
    assert loaded["command"] == provenance.command() and "torch" in loaded["environment"]  # as this process ran
    assert loaded["rerun"] == "reglab reproduce toy --quick"
    assert set(loaded["code"]) == {"reglab", "git_commit", "git_dirty", "sources_sha256"}
    assert len(loaded["code"]["sources_sha256"]) == 64 and int(loaded["code"]["sources_sha256"], 16) >= 0
    html = (tmp_path / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "1 &lt; 2 &amp; 3" in html and "note &lt;b&gt;bold&lt;/b&gt;" in html and "<i>" not in html
    assert base64.b64encode(png).decode() in html  # the figure is embedded, nothing is linked
    assert "src=\"http" not in html and "<link" not in html


def test_claims_table_has_one_row_per_claim_with_its_verdict():
    data = {"preset": "toy", "figure": "Fig. 9", "source": "s", "claims": [c.row() for c in _outcome().claims]}
    console = Console(record=True, width=200)
    console.print(claims_table(data))
    lines = [line for line in console.export_text().splitlines() if "│" in line]
    assert len(lines) == 3
    assert [line.split("│")[4].strip() for line in lines] == ["agree", "not run", "disagree"]
    assert lines[0].split("│")[2].strip() == "2 > 1"  # the source's value beside reglab's
    assert "<script>alert(1)</script> holds" in lines[0]  # markup-escaped, printed verbatim


def test_cli_lists_presets_and_rejects_an_unknown_one(tmp_path):
    listing = reglab("reproduce", "--list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    for name in NAMES:
        assert name in listing.stdout
    assert "Fig. 1.10" in listing.stdout and "full run" in listing.stdout
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


def _results(folder, name: str, **fields) -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / "results.json").write_text(json.dumps({"preset": name, **fields}))


def test_run_refuses_a_missing_data_dir_and_another_reproductions_folder(tmp_path):
    """Checked before anything runs; the folder's files are left as they were."""
    from reglab.reproduce import check_results, run
    from reglab.train.rundir import DamagedFile

    with pytest.raises(ConfigError, match="--data-dir: '.*nowhere' is not a directory"):
        run("dropout-1d", Settings(quick=True, data_dir=tmp_path / "nowhere"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    _results(tmp_path, "r1-mnist")
    results = tmp_path / "r1-mnist" / "results.json"
    with pytest.raises(ConfigError, match="r1-mnist: holds the reproduction 'r1-mnist'; choose another --out"):
        run("dropout-1d", Settings(quick=True), tmp_path / "r1-mnist")
    check_results(tmp_path / "r1-mnist", "r1-mnist")  # the same reproduction may run there again
    for text, error in [("{not json", "JSONDecodeError"), ("[1]", "TypeError"), ("{}", "KeyError")]:
        results.write_text(text)
        with pytest.raises(DamagedFile, match=rf"results.json: not a reproduction's results.json \({error}\)"):
            run("dropout-1d", Settings(quick=True), tmp_path / "r1-mnist")
        assert results.read_text() == text
    assert [p.name for p in (tmp_path / "r1-mnist").iterdir()] == ["results.json"]


def test_reduced_runs_are_marked_and_listed_with_their_run_time(tmp_path):
    from reglab.reproduce.committed import full_run_time

    outcome = _outcome()
    outcome.reduced = "2 epochs"
    toy = Preset("toy", "Toy", "somewhere", lambda s: outcome)
    data = write(toy, outcome, Settings(reduced=True), tmp_path / "toy")
    assert data["budget"] == "reduced" and data["reduced"] == "2 epochs" and not data["quick"]
    assert data["rerun"] == "reglab reproduce toy --reduced"
    _results(tmp_path, "full", budget="full", seconds=754.0)
    _results(tmp_path, "quick", budget="quick", quick=True, seconds=3.0)
    _results(tmp_path, "old", quick=False, seconds=30.0)  # written before the budget field existed
    _results(tmp_path, "short", budget="full", seconds=42.0)
    assert full_run_time("full", tmp_path) == "13 min" and full_run_time("short", tmp_path) == "42 s"
    assert full_run_time("old", tmp_path) == "pending rerun"
    assert full_run_time("quick", tmp_path) == "not run" and full_run_time("absent", tmp_path) == "not run"
    assert full_run_time("toy", tmp_path).endswith("(reduced)")


def test_summary_has_a_row_per_claim_and_pending_rows_for_old_runs(tmp_path):
    from reglab.reproduce.summary import CATALOG, markdown, rows

    claim = {"claim": "a | b", "source": "1%", "reglab": "2%", "verdict": "disagree", "criterion": "equal",
             "checked": "the data"}
    _results(tmp_path, "l1-l4", budget="reduced", seconds=600, claims=[claim, {**claim, "verdict": "agree"}])
    _results(tmp_path, "r1-mnist", quick=False, seconds=10, claims=[])  # old format: pending
    table = rows(tmp_path)
    by_figure = {}
    for r in table:
        by_figure.setdefault(r[0], []).append(r)
    assert {figure for figure, _ in CATALOG} == set(by_figure)
    assert [r[4] for r in by_figure["Fig. 1.10"]] == ["disagree", "agree"]
    assert by_figure["Fig. 1.10"][0][5] == "equal. Checked: the data"
    assert by_figure["Fig. 1.4"][0][4] == "pending rerun" and by_figure["Fig. 1.11"][0][4] == "pending rerun"
    text = markdown(tmp_path)
    assert "| a \\| b | 1% | 2% | disagree |" in text and "Totals: 1 agree, 1 disagree" in text


def test_a_superseded_verdict_counts_as_today_and_keeps_the_committed_one_in_its_text(tmp_path):
    from reglab.reproduce.summary import RESULTS_DIR, SUPERSEDED_VERDICTS, load, markdown, rows

    for (name, claim) in SUPERSEDED_VERDICTS:  # every entry names a committed claim
        assert claim in [c["claim"] for c in load(RESULTS_DIR, name)["claims"]], (name, claim)
    (name, claim), (verdict, reason) = next(iter(SUPERSEDED_VERDICTS.items()))
    _results(tmp_path, name, budget="full", seconds=60, claims=[
        {"claim": claim, "source": "1%", "reglab": "2%", "verdict": "agree", "criterion": "old rule"},
        {"claim": "another", "source": "1%", "reglab": "2%", "verdict": "agree", "criterion": "rule"}])
    row, other = (r for r in rows(tmp_path) if r[1] in (claim, "another"))
    assert row[4] == verdict != "agree" and row[5].startswith("Committed verdict 'agree', superseded: " + reason)
    assert row[5].endswith("Committed criterion: old rule") and other[4] == "agree"
    assert "Totals: 1 agree" in markdown(tmp_path)


def test_sources_hash_is_sha256_over_every_source_path_and_its_bytes():
    """The code version outside a git checkout: a hash over every .py and .toml of the package, path and bytes."""
    import hashlib
    from pathlib import Path

    from reglab import provenance

    package = Path(provenance.__file__).resolve().parent
    expected = hashlib.sha256()
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.toml")]):
        expected.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    assert provenance.sources_sha256() == expected.hexdigest()
