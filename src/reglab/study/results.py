"""Reading a study back: `load_study(dir)` gives its spec and two pandas tables.

    study.runs     one row per run: run_id, arm, seed, status, final_* / best_* metrics, gap_acc,
                   gap_loss, fluctuation, the end-of-training analyses (hessian_top, hessian_trace,
                   landscape_rise, effective_ratio and their estimator noise), seconds, epochs, …
    study.epochs   one row per run and epoch: run_id, arm, seed, status + the trainer's metrics

Reads only the store and the run directories; never writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from reglab.study.analysis import NOISE
from reglab.study.classes import run_columns
from reglab.study.robust import robust_table
from reglab.study.spec import EPOCH_METRICS, StudySpec
from reglab.study.stability import fluctuation, stability_table
from reglab.study.stats import ALPHA, ANALYSIS_METRICS, METRIC_BY_COLUMN, METRICS, summarize
from reglab.study.store import FINISHED, RunRow, StudyStore
from reglab.study.target import time_to_target
from reglab.train.rundir import read_metrics

ANALYSIS_COLUMNS = [c for m in ANALYSIS_METRICS for c in (m.column, NOISE.get(m.column)) if c]


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def run_record(row: RunRow, epochs: list[dict]) -> dict:
    """One row of `Study.runs` from the store row and the run's per-epoch metrics."""
    summary = row.summary or {}
    final, best = summary.get("final") or {}, summary.get("best") or {}
    record = {"run_id": row.run_id, "arm": row.arm, "seed": row.seed, "status": row.status,
              "epochs": len(epochs), "seconds": row.seconds if row.seconds is not None else math.nan}
    for key in EPOCH_METRICS:
        record[f"final_{key}"] = _num(final.get(key))
    for key in ANALYSIS_COLUMNS:
        record[key] = _num(final.get(key))
    record["final_weight_norm"] = _num(final.get("weight_norm"))  # absent from runs stored before 2026-11-29
    record["best_test_acc"] = _num(best.get("test_acc"))  # at best_epoch, the epoch of the highest test acc
    losses = [x for x in (_num(e.get("test_loss")) for e in epochs) if math.isfinite(x)]
    record["best_test_loss"] = min(losses) if losses else math.nan  # the lowest test loss of any epoch
    record["best_epoch"] = best.get("epoch")
    record["gap_acc"] = record["final_train_eval_acc"] - record["final_test_acc"]
    record["gap_loss"] = record["final_test_loss"] - record["final_train_eval_loss"]
    record["fluctuation"] = fluctuation([_num(e.get("test_loss")) for e in epochs]) \
        if row.status == "done" else math.nan
    record.update(run_columns(summary.get("confusion")), confusion=summary.get("confusion"))
    record.update(diverged_epoch=summary.get("diverged_epoch"), stopped_epoch=summary.get("stopped_epoch"),
                  num_params=summary.get("num_params"), device=summary.get("device"),
                  pack_size=(summary.get("pack") or {}).get("size"),  # None: trained alone
                  attempts=row.attempts, started=row.started, finished=row.finished, error=row.error)
    return record


@dataclass
class Study:
    """A study directory read back: spec, per-run and per-epoch tables, and the analyses on them.

    A snapshot: `summary` is computed once per (alpha, baseline, arms, correction) and reused, so
    the table, the report and an export cost one pass of the statistics."""

    path: Path
    spec: StudySpec
    runs: pd.DataFrame
    epochs: pd.DataFrame
    _summaries: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def arms(self) -> list[str]:
        return list(self.spec.arms)

    @property
    def baseline(self) -> str:
        return self.spec.baseline

    def summary(self, alpha: float = ALPHA) -> pd.DataFrame:
        """Per (arm, metric): n, mean ± std, 95% CI, difference to the baseline, paired or Welch test,
        p adjusted across arms (the spec's `statistics.correction`), verdict."""
        key = (alpha, self.baseline, tuple(self.arms), self.spec.statistics.correction)
        if key not in self._summaries:
            self._summaries[key] = summarize(self.runs, self.arms, self.baseline, metrics=(*METRICS, *ANALYSIS_METRICS),
                                             alpha=alpha, correction=self.spec.statistics.correction)
        return self._summaries[key].copy()

    def robust(self, metric: str = "final_test_acc") -> pd.DataFrame:
        """Per arm: IQM with its stratified bootstrap interval and the probability of improvement over
        the baseline with its interval."""
        return robust_table(self.runs, self.arms, self.baseline, metric,
                            higher_is_better=METRIC_BY_COLUMN[metric].higher_is_better)

    def time_to_target(self) -> pd.DataFrame | None:
        """Per arm: runs that reached the spec's `statistics.target`, median epoch and seconds
        (`reglab.study.target.median_time`; None without a target)."""
        if not self.spec.statistics.target:
            return None
        (metric, target), = self.spec.statistics.target.items()
        return time_to_target(self.runs, self.epochs, self.arms, metric, target)

    def stability(self) -> pd.DataFrame:
        """Per arm: diverged runs, epoch-to-epoch fluctuation and seed-to-seed spread."""
        return stability_table(self.runs, self.epochs, self.arms)


_NO_RUN = RunRow("", "", 0, 0, "pending", {}, "", 0, None, None, None, None, None)


def read_study(path: Path) -> tuple[StudySpec, pd.DataFrame, pd.DataFrame]:
    """The spec and the runs / epochs tables of a study directory."""
    with StudyStore(path, create=False) as store:
        spec_data, rows = store.spec(), store.runs()
    if spec_data is None:
        raise FileNotFoundError(f"{path}: the study has no spec yet")
    records, epoch_rows = [], []
    for row in rows:
        if row.status in FINISHED and not (path / "runs" / row.run_id / "summary.json").exists():
            row = replace(row, status="missing", summary=None,  # never reported as done without its files
                          error=f"{path / 'runs' / row.run_id}/summary.json is gone; rerun the study to train "
                                "this run again")
        epochs = read_metrics(path / "runs" / row.run_id / "metrics.jsonl")
        records.append(run_record(row, epochs))
        keys = {"run_id": row.run_id, "arm": row.arm, "seed": row.seed, "status": row.status}
        epoch_rows += [{**keys, **e} for e in epochs]
    runs = pd.DataFrame(records) if records else pd.DataFrame(columns=list(run_record(_NO_RUN, [])))
    table = pd.DataFrame(epoch_rows) if epoch_rows else pd.DataFrame(columns=["run_id", "arm", "seed"])
    return StudySpec.from_dict(spec_data), runs, table


def load_study(path: str | Path) -> Study:
    """Read a study directory written by `run_study` / `reglab compare`.

        >>> import tempfile
        >>> from reglab import load_spec, run_study
        >>> spec = load_spec("quickstart", seeds=2, epochs=2).override(
        ...     {"data.train_subset": 400, "data.test_subset": 200, "train.device": "cpu"})
        >>> out = run_study(spec, tempfile.mkdtemp(), progress=False).path
        >>> study = load_study(out)
        >>> len(study.runs), len(study.epochs), study.arms == list(spec.arms)
        (10, 20, True)
        >>> table = study.summary()        # per (arm, metric): n, mean ± std, 95% CI, Δ, p, verdict
        >>> table.loc[table["metric"] == "final_test_acc", ["arm", "n"]].values.tolist()[:2]
        [['baseline', 2], ['weight_decay', 2]]
    """
    path = Path(path)
    spec, runs, epochs = read_study(path)
    return Study(path, spec, runs, epochs)
