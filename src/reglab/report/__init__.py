"""Reports of a study: terminal table, Markdown, CSV and one self-contained HTML file.

    <study>/report/report.html     tables with intervals and verdicts, figures, spec, provenance
    <study>/report/report.md       the same sections in Markdown (`report.document`), figures linked
    <study>/report/summary.csv     per (arm, metric): n, mean, std, CI, Δ, bootstrap CI, p, verdict, seeds needed
    <study>/report/runs.csv        one row per run;  epochs.csv: one row per run and epoch
    <study>/report/stability.csv   per arm: diverged, fluctuation, seed spread
    <study>/report/robust.csv      per arm: IQM and probability of improvement, with intervals
    <study>/report/target.csv      per arm: time to the spec's target (when it sets one)
    <study>/report/figures/        <name>.png and the numbers behind it, <name>.csv
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from reglab.config import ConfigError
from reglab.report.comparison_figures import class_f1_table
from reglab.report.document import Section, html_page, markdown_page, table_section
from reglab.report.environment import provenance_table
from reglab.report.figures import all_figures
from reglab.report.tables import (
    class_f1_rows,
    class_rows,
    compact_rows,
    flatness_rows,
    headline_rows,
    metric_rows,
    primary_metric,
    robust_rows,
    run_rows,
    stability_rows,
    target_rows,
)
from reglab.report.terminal import rich_table
from reglab.report.tune import tune_report
from reglab.study.results import Study, load_study
from reglab.study.stats import ALPHA, CORRECTION_NAMES, METRIC_BY_COLUMN
from reglab.study.store import FINISHED
from reglab.study.target import lower_is_better
from reglab.train.rundir import check_directory, make_directory


def notes(correction: str) -> str:
    """The summary table's footnote: what each column is and which test decides the verdict."""
    return ("Means are over finished runs; diverged runs are counted, not averaged. 95% CI: Student t. "
            "Δ: mean(arm) − mean(baseline) with a bootstrap percentile CI (paired: resampling seeds). "
            "Test: paired t when the arm and the baseline finished on the same seeds, else Welch's t. "
            f"Verdict: the t-test's p adjusted across the arms by {CORRECTION_NAMES[correction]} "
            f"(p_{correction}), at α = {ALPHA}. With few seeds the bootstrap interval is too narrow (it "
            "resamples only the n observed values), so it can exclude 0 while the verdict says \"not "
            "distinguishable\": the verdict is the test to trust. Train loss is measured in training mode "
            "(dropout and noise active), so its verdict is \"higher\" / \"lower\", not better or worse. "
            f"Seeds to detect Δ: seeds per arm with which the test would detect a true difference of the observed "
            f"size 4 times in 5 (80% power, {'at α/m for m arms' if correction != 'none' else 'at α'}); detectable "
            "|Δ| (in the report): the smallest difference this study's seeds detect that often. Both take the "
            "observed seed spread as the true one, so from few seeds they are rough. See docs/studies.md.")


STABILITY_NOTE = ("Fluctuation: mean |L_t − L_{t−1}| of the test loss over the epochs t of the last half "
                  "of training. Seed spread: mean over epochs of the across-seed std of the test curve. "
                  "See docs/studies.md.")
FLATNESS_NOTE = ("End-of-training analyses of every run (reglab.study.analysis; docs/theory.md): lower is "
                 "flatter or more condensed, so \"better\" means lower. Seed std: the spread between runs; "
                 "estimator noise: the RMS over the arm's runs of each run's own estimation error (Hutchinson "
                 "standard error of the trace, standard error over random directions of the loss rise, Lanczos "
                 "residual bound of λ_max; the effective ratio is exact given the weights).")
ROBUST_NOTE = ("IQM: mean of the middle 50% of the finished runs (⌊n/4⌋ cut from each end); interval from a "
               "stratified bootstrap (each arm resampled on its own). P(beats baseline): probability that a "
               "random run of the arm beats a random baseline run (ties count ½; 0.5 = no tendency), with a "
               "stratified bootstrap interval.")
TARGET_NOTE = ("Runs that never reach the target (diverged ones included) are kept as not reached, not dropped; "
               "the median is the first epoch (or wall-clock time) by which at least half of the arm's finished runs "
               "reached it, and reads 'not reached' when fewer than half ever did.")
CLASS_NOTE = ("Per run, from its test-set confusion matrix: macro averages weigh every class equally; micro F1 "
              "pools the counts and equals the accuracy. Mean ± std over finished runs.")
SEARCH_NOTE = ("A trial is one configuration over every seed; its objective aggregates the seeds' final "
               "values, and its interval is over seeds. The best configuration's interval is what a rerun "
               "with fresh seeds should be compared with (`reglab compare --best-of`).")
TABLES = ("runs", "epochs", "summary", "stability", "robust")
NO_RESULT = ("No run of this study has finished yet, so there is nothing to compare; the runs and their "
             "errors are listed below. Rerun the study to resume it.")


def _as_study(study: Study | str | Path) -> Study:
    return study if isinstance(study, Study) else load_study(study)


def _meta(study: Study) -> str:
    counts = study.runs["status"].value_counts().to_dict() if len(study.runs) else {}
    status = ", ".join(f"{v} {k}" for k, v in counts.items())
    return (f"baseline: {study.baseline} · seeds: {study.spec.seed_list} · {len(study.arms)} arms · "
            f"{len(study.runs)} runs ({status})")


def summary_table(study: Study | str | Path) -> Table:
    """The headline table as a rich `Table` (what `reglab compare` prints)."""
    study = _as_study(study)
    if not has_finished_run(study):
        return rich_table(run_rows(study), title=f"{study.spec.name} — {_meta(study)}", caption=NO_RESULT)
    rows = compact_rows(headline_rows(study, study.summary(), study.stability()))
    return rich_table(rows, title=f"{study.spec.name} — {_meta(study)}",
                      caption=notes(study.spec.statistics.correction))


def flatness_table(study: Study | str | Path) -> Table | None:
    """The end-of-training analyses by arm as a rich `Table`, or None when the study has none."""
    study = _as_study(study)
    rows = flatness_rows(study, study.summary())
    if not rows:
        return None
    drop = ("95% CI",)
    return rich_table([{k: v for k, v in r.items() if k not in drop} for r in rows],
                      title=f"{study.spec.name} — flatness and condensation by arm", caption=FLATNESS_NOTE)


def export_csv(study: Study | str | Path, path: str | Path, table: str = "runs") -> Path:
    """Write one table of a study as CSV: one of `TABLES` (runs, epochs, summary, stability, robust)."""
    if table not in TABLES:
        raise ConfigError(f"table: unknown {table!r} (tables: {', '.join(TABLES)})")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; the table is written to a file, e.g. {path / table}.csv")
    check_directory(path.parent, "the CSV file's folder")
    study = _as_study(study)
    frame = {"runs": lambda: study.runs, "epochs": lambda: study.epochs, "summary": study.summary,
             "stability": study.stability,
             "robust": lambda: study.robust(primary_metric(study.summary()))}[table]()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def write_report(study: Study | str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write every report file (default `<study>/report/`); returns their paths by kind."""
    study = _as_study(study)
    out = check_directory(out_dir if out_dir is not None else study.path / "report", "a report directory")
    make_directory(check_directory(out / "figures", "the report's figures directory"), "the report's figures directory")
    if not has_finished_run(study):
        return _write_empty_report(study, out)
    summary, stability = study.summary(), study.stability()
    robust = study.robust(primary_metric(summary)) if len(summary) else None
    target = study.time_to_target()
    paths = {"html": out / "report.html", "markdown": out / "report.md", "figures": out / "figures"}
    for name, frame in (("summary", summary), ("runs", study.runs), ("epochs", study.epochs),
                        ("stability", stability), ("robust", robust), ("target", target)):
        if frame is not None:
            paths[name] = out / f"{name}.csv"
            frame.to_csv(paths[name], index=False)

    search = tune_report(study.path)
    figures = []
    for fig in [*all_figures(study), *(search[2] if search else [])]:
        png = fig.png()
        (out / "figures" / f"{fig.name}.png").write_bytes(png)
        fig.numbers.to_csv(out / "figures" / f"{fig.name}.csv", index=False)
        figures.append((fig, png))

    headline = headline_rows(study, summary, stability)
    metrics = list(dict.fromkeys(summary["metric"])) if len(summary) else []
    devices = sorted({d for d in study.runs.get("device", []) if isinstance(d, str)})
    sections = [table_section("Summary", headline, notes(study.spec.statistics.correction))]
    if flatness := flatness_rows(study, summary):
        sections.append(table_section("Flatness and condensation", flatness, FLATNESS_NOTE))
    if robust is not None:
        sections.append(table_section("Robust aggregates", robust_rows(robust, study.baseline), ROBUST_NOTE))
    if target is not None:
        (metric, value), = study.spec.statistics.target.items()
        sections.append(table_section(f"Time to target: {metric} {'≤' if lower_is_better(metric) else '≥'} {value:g}",
                                      target_rows(target), TARGET_NOTE))
    if search is not None:
        sections += [table_section("Best configuration (search)", search[1], SEARCH_NOTE),
                     table_section("Trials", search[0])]
    if classes := class_rows(study):
        sections += [table_section("Per-class metrics (test set)", classes, CLASS_NOTE),
                     table_section("Per-class F1 by arm", class_f1_rows(class_f1_table(study)))]
    sections += [
        Section("Figures", figures=tuple(figures)),
        Section("Every metric", tables=tuple((METRIC_BY_COLUMN[m].label, metric_rows(study, summary, m))
                                             for m in metrics)),
        table_section("Stability", stability_rows(stability), STABILITY_NOTE),
        *_closing_sections(study, devices),
    ]
    _write_pages(study, sections, paths)
    return paths


def _closing_sections(study: Study, devices: list[str]) -> list[Section]:
    """Every report ends with its runs, the spec and the provenance."""
    env = provenance_table(study.path, devices)
    return [table_section("Runs", run_rows(study)), Section("Study spec", data=study.spec.to_dict()),
            table_section("Provenance", [{"key": k, "value": v} for k, v in env.items()])]


def _write_pages(study: Study, sections: list[Section], paths: dict[str, Path]) -> None:
    page = {"name": study.spec.name, "description": study.spec.description, "meta": _meta(study),
            "sections": sections}
    paths["html"].write_text(html_page(**page))
    paths["markdown"].write_text(markdown_page(**page))


def has_finished_run(study: Study) -> bool:
    return bool(len(study.runs)) and study.runs["status"].isin(FINISHED).any()


def _write_empty_report(study: Study, out: Path) -> dict[str, Path]:
    """The report of a study without a finished run: says so, and lists the runs and their errors."""
    paths = {"html": out / "report.html", "markdown": out / "report.md", "figures": out / "figures",
             "runs": out / "runs.csv"}
    study.runs.to_csv(paths["runs"], index=False)
    _write_pages(study, [Section("Summary", text=NO_RESULT), *_closing_sections(study, [])], paths)
    return paths


__all__ = ["TABLES", "export_csv", "flatness_table", "summary_table", "write_report"]
