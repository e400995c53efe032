"""The provenance section of a study's report: the last command run on the study, with its own time, code
version and environment, and the first of the earlier ones."""

from reglab.report.environment import provenance_table
from reglab.study.store import StudyStore

FIRST = {"time": "2024-01-02T03:04:05+00:00", "command": "reglab compare a.toml",
         "environment": {"python": "3.11.1", "torch": "2.1.0", "device(s) used": "cpu"},
         "code": {"reglab": "0.1.0", "git_commit": "a" * 40, "git_dirty": False, "sources_sha256": "1" * 64}}
LAST = {"time": "2025-06-07T08:09:10+00:00", "command": "reglab compare a.toml --workers 1",
        "environment": {"python": "3.12.2", "torch": "2.5.0", "device(s) used": "cuda:0"},
        "code": {"reglab": "0.2.0", "git_commit": "b" * 40, "git_dirty": True, "sources_sha256": "2" * 64}}


def test_the_report_names_the_last_invocation_and_the_first_of_the_earlier_ones(tmp_path):
    with StudyStore(tmp_path) as store:
        store.add_invocation(FIRST)
        store.add_invocation(LAST)
    rows = provenance_table(tmp_path, ["cpu", "cuda:0"])
    assert rows["command"] == "reglab compare a.toml --workers 1"
    assert rows["run at (UTC)"] == "2025-06-07T08:09:10+00:00"
    assert rows["code"] == "reglab 0.2.0, commit bbbbbbbbbbbb + local changes, sources sha256 2222222222222222…"
    assert (rows["python"], rows["torch"]) == ("3.12.2", "2.5.0")
    assert "device(s) used" not in rows and rows["devices of the runs"] == "cpu, cuda:0"
    assert rows["earlier commands"] == (
        "1, the first at 2024-01-02T03:04:05+00:00: reglab compare a.toml (reglab 0.1.0, commit aaaaaaaaaaaa, "
        "sources sha256 1111111111111111…); study.db keeps them all")


def test_a_single_invocation_has_no_earlier_commands(tmp_path):
    with StudyStore(tmp_path) as store:
        store.add_invocation(FIRST)
    rows = provenance_table(tmp_path, [])
    assert rows["command"] == "reglab compare a.toml" and "earlier commands" not in rows
    assert rows["devices of the runs"] == "—"
