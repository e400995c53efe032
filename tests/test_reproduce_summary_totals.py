"""docs/reproduce.md's totals and run column, counted by hand on a made-up docs/results folder."""

import json

import pytest

from reglab.reproduce.committed import full_run_time
from reglab.reproduce.summary import code_line, markdown, rows, runs


def _results(folder, name: str, **fields) -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / "results.json").write_text(json.dumps({"preset": name, **fields}))


def _claim(claim: str, verdict: str) -> dict:
    return {"claim": claim, "source": "s", "reglab": "r", "verdict": verdict, "criterion": "rule", "checked": ""}


def _folder(tmp_path):
    """dropout-1d (figs 1.1 and 1.8): a reduced run with 2 agree, 1 disagree, 1 not run; condensation: only a
    quick run (its claims must not count); effective-ratio: absent, needs data; the other 8 presets absent."""
    _results(tmp_path, "dropout-1d", budget="reduced", reduced="2 seeds", seconds=125, device="cpu",
             command="reglab reproduce dropout-1d --reduced",
             claims=[_claim("a1", "agree"), _claim("a2", "agree"), _claim("d", "disagree"), _claim("n", "not run")])
    _results(tmp_path, "condensation", budget="quick", quick=True, seconds=3,
             claims=[_claim("q1", "agree"), _claim("q2", "disagree")])
    return tmp_path


def test_totals_count_each_verdict_once(tmp_path):
    # by hand: agree 2, disagree 1; not run 1 claim + effective-ratio (no data) = 2; pending: condensation (quick),
    # teacher-student, r1-mnist, escape, sample-size, dropout-table, l1-l4, interpolation, seed000 = 9; Fig. 1.5
    text = markdown(_folder(tmp_path))
    assert ("Totals: 2 agree, 1 disagree, 2 not run, 9 pending rerun; 1 figure without an experiment."
            in text)


def test_a_preset_of_two_figures_lists_its_claims_once_and_a_quick_run_is_pending(tmp_path):
    table = rows(_folder(tmp_path))
    claims = [r[1] for r in table]
    assert claims.count("a1") == 1 and "q1" not in claims
    later = next(r for r in table if r[0] == "Fig. 1.8")
    assert later[1].startswith("see ") and later[4] == ""
    fig12 = [r for r in table if r[0] == "Fig. 1.2"]
    assert len(fig12) == 1 and fig12[0][4] == "pending rerun"
    effective = [r for r in table if r[0] == "Fig. 1.3 (c)"]
    assert len(effective) == 1 and effective[0][4] == "not run" and "--data-dir" in effective[0][6]


def test_run_column_and_run_lines_say_reduced(tmp_path):
    table = rows(_folder(tmp_path))
    row = next(r for r in table if r[1] == "a1")
    assert row[6] == "[reduced](results/dropout-1d/README.md), 2 min on cpu"
    line = next(x for x in runs(tmp_path) if x.startswith("- `dropout-1d`"))
    assert line.startswith("- `dropout-1d`: reduced — 2 seeds; 2 min on cpu, commit unknown; "
                           "command `reglab reproduce dropout-1d --reduced`")


def test_code_line_and_run_time_by_hand(tmp_path):
    assert code_line({}) == "commit unknown"
    assert code_line({"git_commit": "0123456789abcdef", "git_dirty": False}) == "commit 0123456789"
    assert code_line({"git_commit": "0123456789abcdef", "git_dirty": True, "sources_sha256": "f" * 64}) == \
        "commit 0123456789 + local changes (sources sha256 ffffffffffff)"
    _results(tmp_path, "gpu", budget="full", seconds=180.0, device="cuda")
    _results(tmp_path, "gpu-cut", budget="reduced", seconds=30.0, device="cuda:1")
    assert full_run_time("gpu", tmp_path) == "3 min on cuda"
    assert full_run_time("gpu-cut", tmp_path) == "30 s on cuda:1 (reduced)"


def test_a_folder_without_results_is_refused_not_summarised_as_empty(tmp_path, capsys):
    """A mistyped path (or --help) must not print a plausible empty table over docs/reproduce.md."""
    from reglab.reproduce.summary import main

    for argv in ([str(tmp_path / "missing")], [str(tmp_path)], ["--help"]):
        with pytest.raises(SystemExit, match="no reproduction results"):
            main(argv)
    assert capsys.readouterr().out == ""
