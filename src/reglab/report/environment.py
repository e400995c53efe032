"""Where a study's numbers come from: the command, code version and environment its index recorded
(`reglab.provenance`), without the host name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reglab.provenance import code_version, command, describe_code, environment


def provenance_table(study_dir: Path | None, devices: list[str]) -> dict[str, str]:
    """The last command run on the study (and how many before it), its code version and environment, as
    study.db recorded them; for a study started before reglab recorded them, this process's environment,
    said so. Then the devices its runs used, and when, by which command and with which code the report
    was made (its tables and verdicts are computed when it is written, e.g. by `reglab report`)."""
    from reglab.study.store import DB_NAME, StudyStore

    invocations = []
    if study_dir is not None and (Path(study_dir) / DB_NAME).is_file():
        with StudyStore(study_dir, create=False) as store:
            invocations = store.invocations()
    if invocations:
        last = invocations[-1]
        rows = {"command": last["command"], "run at (UTC)": last["time"], "code": describe_code(last["code"]),
                **{k: v for k, v in last["environment"].items() if k != "device(s) used"}}
        if len(invocations) > 1:
            first = invocations[0]
            rows["earlier commands"] = (f"{len(invocations) - 1}, the first at {first['time']}: {first['command']} "
                                        f"({describe_code(first['code'])}); study.db keeps them all")
    else:
        rows = {"recorded": "no (the study predates reglab's provenance records): the environment of the report",
                **environment()}
        rows.pop("device(s) used")
    rows["devices of the runs"] = ", ".join(devices) if devices else "—"
    rows["each run"] = "runs/<run>/provenance.jsonl: the command, environment and code of its every (re)start"
    rows["report generated (UTC)"] = datetime.now(UTC).isoformat(timespec="seconds")
    rows["report written by"] = f"{command()} ({describe_code(code_version())})"
    return rows
