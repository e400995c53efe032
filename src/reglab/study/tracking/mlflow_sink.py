"""MLflow sink: one parent run per study, one child run per (arm, seed), the report on the parent.

Without a tracking URI it needs no server: a SQLite store ``<study>/mlflow.db`` with artifacts under
``<study>/mlartifacts`` (browse with ``mlflow ui --backend-store-uri sqlite:///<study>/mlflow.db``).

    experiment   the study's name
    parent run   tags reglab.role=study, reglab.study=<hash of the study directory>; params: seeds,
                 baseline, arms; artifacts: spec.json, report/ (when the report is written)
    child run    tags arm, seed, reglab.run_id, reglab.status (done | diverged), mlflow.parentRunId;
                 params: the resolved run config as dotted keys; metrics: every epoch metric at step = epoch

A resumed study reuses its parent run; a run that is logged again (re-run after ``--force``) replaces
its earlier child.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from reglab.study.spec import content_hash
from reglab.study.tracking import LoggedRun, Tracker, flatten, scalars

MAX_PARAM_CHARS = 6000
"""MLflow's limit on a parameter value."""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [items]


class MLflowTracker(Tracker):
    def __init__(self, spec: dict, out_dir: Path, target: str | None = None):
        out_dir = Path(out_dir).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=target or f"sqlite:///{out_dir / 'mlflow.db'}")
        experiment = self.client.get_experiment_by_name(spec["name"])
        self.experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(
            spec["name"], artifact_location=None if target else (out_dir / "mlartifacts").as_uri())
        study = content_hash(str(out_dir))
        parents = self.client.search_runs(
            [self.experiment_id], f"tags.`reglab.role` = 'study' AND tags.`reglab.study` = '{study}'")
        if parents:
            self.parent = parents[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
        else:
            self.parent = self.client.create_run(self.experiment_id, run_name=spec["name"], tags={
                "reglab.role": "study", "reglab.study": study, "reglab.study_dir": str(out_dir)}).info.run_id
            self.client.log_batch(self.parent, params=[
                Param("seeds", _text(spec.get("seeds"))), Param("baseline", _text(spec.get("baseline"))),
                Param("arms", ",".join(spec.get("arms", {})))])
        self.client.log_dict(self.parent, spec, "spec.json")

    def children(self) -> dict[str, list[str]]:
        """reglab run id -> MLflow run ids of the study's child runs."""
        found: dict[str, list[str]] = {}
        for run in self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{self.parent}'",
                                           max_results=50_000):
            found.setdefault(run.data.tags.get("reglab.run_id", ""), []).append(run.info.run_id)
        return found

    def logged(self) -> set[str]:
        return set(self.children())

    def log_run(self, run: LoggedRun) -> None:
        for old in self.children().get(run.run_id, []):
            self.client.delete_run(old)
        child = self.client.create_run(self.experiment_id, run_name=run.run_id, tags={
            "mlflow.parentRunId": self.parent, "arm": run.arm, "seed": str(run.seed),
            "reglab.run_id": run.run_id, "reglab.status": run.status}).info.run_id
        params = [Param(k, _text(v)[:MAX_PARAM_CHARS]) for k, v in flatten(run.config).items()]
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, record["epoch"])
                   for record in run.epochs for key, value in scalars(record).items()]
        for batch in _chunks(params, 100):
            self.client.log_batch(child, params=batch)
        for batch in _chunks(metrics, 1000):
            self.client.log_batch(child, metrics=batch)
        self.client.set_terminated(child, "FINISHED")

    def log_report(self, report_dir: Path) -> None:
        self.client.log_artifacts(self.parent, str(report_dir), artifact_path="report")

    def close(self) -> None:
        self.client.set_terminated(self.parent, "FINISHED")
