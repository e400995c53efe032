"""The study store: a SQLite index (`<out>/study.db`) beside one trainer run directory per run.

    <out>/study.db                 spec (JSON + hash), the invocations (command, environment, code version of
                                   each `reglab compare`/`tune`/`sweep` on it) and one row per run (status,
                                   times, error, summary)
    <out>/runs/<arm>__s<seed>/     the trainer's run directory (config.json, metrics.jsonl, summary.json,
                                   checkpoint.pt, model.pt)

Only the driver process writes the database (WAL journal, one short transaction per update);
readers (`load_study`, reports) only select. Run status: pending -> running -> done | diverged | failed.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reglab.train.rundir import DamagedFile, clean_json

DB_NAME = "study.db"
FINISHED = ("done", "diverged")
STATUSES = ("pending", "running", *FINISHED, "failed")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    arm         TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN {STATUSES!r}),
    config      TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    started     TEXT,
    finished    TEXT,
    seconds     REAL,
    error       TEXT,
    summary     TEXT
);
"""


@dataclass(frozen=True)
class RunRow:
    run_id: str
    arm: str
    seed: int
    position: int
    status: str
    config: dict
    config_hash: str
    attempts: int
    started: str | None
    finished: str | None
    seconds: float | None
    error: str | None
    summary: dict | None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


SEARCH_MARKER = "search.json"
"""A file `reglab tune` writes into its directory: its index also holds the search's trials, which no
run directory records, so it cannot be rebuilt from them as a compare study's can."""

JSON_META = ("spec", "invocations", "tune", "pack_auto")
"""Meta keys whose values are JSON."""


def damaged_remedy(out_dir: Path) -> str:
    """What to do about a damaged study.db in `out_dir`."""
    if (out_dir / SEARCH_MARKER).exists():
        return ("a search's index cannot be rebuilt from its run directories (its trials are only there): "
                "restore it from a copy, or search into another --out")
    return (f"rebuild it from the run directories with `reglab compare SPEC --out {out_dir} --rebuild-index` "
            "(SPEC: the study's preset or TOML file)")


class StudyStore:
    """Read and write the index of one study directory (use as a context manager)."""

    def __init__(self, out_dir: str | Path, *, create: bool = True):
        self.out_dir = Path(out_dir)
        path = self.out_dir / DB_NAME
        if not create and not path.exists():
            hint = (f"; its runs/ are here: index them again with `reglab compare SPEC --out {self.out_dir} "
                    "--rebuild-index` (SPEC: the study's preset or TOML file)"
                    if (self.out_dir / "runs").is_dir() else "; is it a reglab study directory?")
            raise FileNotFoundError(f"{self.out_dir}: no {DB_NAME}{hint}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.conn = None
        try:
            self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)  # fails on e.g. a directory
            self.conn.row_factory = sqlite3.Row
            if (check := self.conn.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
                raise sqlite3.DatabaseError(check)
            if create:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(_SCHEMA)
            self.conn.execute("SELECT run_id, status FROM runs LIMIT 1").fetchall()
            self.conn.execute("SELECT key FROM meta LIMIT 1").fetchall()
            self._check_json()
        except (sqlite3.DatabaseError, ValueError) as err:
            if self.conn is not None:
                self.conn.close()
            raise DamagedFile(path, f"damaged ({err}); {damaged_remedy(self.out_dir)}") from None

    def _check_json(self) -> None:
        """Every JSON value of the index parses (a damaged one is found here, not halfway through a command)."""
        for key, value in self.conn.execute("SELECT key, value FROM meta").fetchall():
            if key in JSON_META:
                json.loads(value)
        for run_id, config, summary in self.conn.execute("SELECT run_id, config, summary FROM runs").fetchall():
            try:
                json.loads(config), summary and json.loads(summary)
            except ValueError as err:
                raise ValueError(f"run {run_id}: {err}") from None

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def run_dir(self, run_id: str) -> Path:
        return self.out_dir / "runs" / run_id

    def _write(self, sql: str, params: tuple = ()) -> None:
        with self.conn:  # one short transaction
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(sql, params)

    # ------------------------------------------------------------------------------------ spec
    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def spec(self) -> dict | None:
        text = self.meta("spec")
        return json.loads(text) if text else None

    def set_spec(self, spec: dict, spec_hash: str) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for key, value in (("spec", json.dumps(spec)), ("spec_hash", spec_hash), ("updated", now())):
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (now(),))

    def invocations(self) -> list[dict]:
        """Every command run on this directory (`reglab.provenance.record`), oldest first."""
        return json.loads(self.meta("invocations") or "[]")

    def add_invocation(self, entry: dict) -> None:
        with self.conn:  # read and append in one transaction
            self.conn.execute("BEGIN IMMEDIATE")
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'invocations'").fetchone()
            entries = [*json.loads(row["value"] if row else "[]"), clean_json(entry)]
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('invocations', ?)", (json.dumps(entries),))

    # ------------------------------------------------------------------------------------ runs
    def runs(self) -> list[RunRow]:
        rows = self.conn.execute("SELECT * FROM runs ORDER BY position").fetchall()
        return [RunRow(**{**dict(r), "config": json.loads(r["config"]),
                          "summary": json.loads(r["summary"]) if r["summary"] else None}) for r in rows]

    def add_run(self, run_id: str, arm: str, seed: int, position: int, config: dict,
                config_hash: str) -> None:
        """Insert a pending run, or reset an existing one to pending with a new config."""
        self._write("INSERT OR REPLACE INTO runs (run_id, arm, seed, position, status, config, config_hash) "
                    "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                    (run_id, arm, seed, position, json.dumps(config), config_hash))

    def set_position(self, run_id: str, arm: str, position: int) -> None:
        self._write("UPDATE runs SET arm = ?, position = ? WHERE run_id = ?", (arm, position, run_id))

    def delete_run(self, run_id: str) -> None:
        self._write("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def mark_pending(self, run_id: str) -> None:
        self._write("UPDATE runs SET status = 'pending', summary = NULL WHERE run_id = ?", (run_id,))

    def mark_running(self, run_id: str) -> None:
        self._write("UPDATE runs SET status = 'running', started = ?, finished = NULL, error = NULL, "
                    "attempts = attempts + 1 WHERE run_id = ?", (now(), run_id))

    def mark_finished(self, run_id: str, status: str, seconds: float, summary: dict[str, Any]) -> None:
        if status not in FINISHED:
            raise ValueError(f"status: expected one of {FINISHED} (got {status!r})")
        self._write("UPDATE runs SET status = ?, finished = ?, seconds = ?, error = NULL, summary = ? "
                    "WHERE run_id = ?", (status, now(), seconds, json.dumps(clean_json(summary)), run_id))

    def mark_failed(self, run_id: str, error: str) -> None:
        self._write("UPDATE runs SET status = 'failed', finished = ?, error = ? WHERE run_id = ?",
                    (now(), error, run_id))
