"""The report's tables as rows of display strings, shared by the terminal, Markdown and HTML renderers.

Means are over finished runs only; n is printed next to every mean ± std, and diverged runs are
counted in their own column.
"""

from __future__ import annotations

import re

import pandas as pd

from reglab.report import format as fmt
from reglab.study.results import Study
from reglab.study.stats import METRIC_BY_COLUMN

Rows = list[dict[str, str]]
DETECTABLE = "detectable |Δ|"
SEEDS_NEEDED = "seeds to detect Δ"


def primary_metric(summary: pd.DataFrame) -> str:
    """The headline metric: final test accuracy, or final test loss for regression."""
    metrics = set(summary["metric"]) if len(summary) else set()
    return "final_test_acc" if "final_test_acc" in metrics else "final_test_loss"


def _row(summary: pd.DataFrame, arm: str, metric: str) -> pd.Series | None:
    found = summary[(summary["arm"] == arm) & (summary["metric"] == metric)]
    return found.iloc[0] if len(found) else None


def _diverged(row: pd.Series) -> str:
    text = f"{row['diverged']}/{row['runs']} diverged" if row["diverged"] else "none"
    return text + (f" (+{row['unfinished']} unfinished)" if row["unfinished"] else "")


def headline_rows(study: Study, summary: pd.DataFrame, stability: pd.DataFrame) -> Rows:
    """One row per arm: the primary metric with interval, difference, p, verdict, gap and stability."""
    metric = primary_metric(summary)
    label = METRIC_BY_COLUMN[metric].label
    rows = []
    for arm in study.arms:
        r, st = _row(summary, arm, metric), stability[stability["arm"] == arm].iloc[0]
        if r is None:
            continue
        gap = _row(summary, arm, "gap_acc")
        rows.append({
            "arm": arm, f"{label} (mean ± std)": fmt.mean_std(metric, r["mean"], r["std"], r["n"]),
            "95% CI": fmt.interval(metric, r["ci_low"], r["ci_high"]),
            "Δ vs baseline [bootstrap 95% CI]": "baseline" if arm == study.baseline else
            f"{fmt.diff(metric, r['diff'])} {fmt.diff_interval(metric, r['diff_low'], r['diff_high'])}"
            .replace("— —", "—"),
            "test": r["test"], f"p ({r['correction']})": fmt.p_value(r["p_adjusted"]), "verdict": r["verdict"],
            **power_columns(metric, r),
            "gap acc (train − test)": fmt.mean_std("gap_acc", gap["mean"], gap["std"], gap["n"])
            if gap is not None else "—",
            "fluctuation": fmt.value("fluctuation", st["fluctuation_mean"]),
            "seed spread (acc, pp)": fmt.spread("spread_test_acc", st["spread_test_acc"]),
            "diverged": _diverged(r),
        })
    return rows


def power_columns(metric: str, r: pd.Series) -> dict[str, str]:
    """What the seeds could detect (`reglab.study.power`): the smallest difference found 4 times in 5 at
    this n, and the seeds per arm the observed difference needs for that."""
    return {DETECTABLE: fmt.magnitude(metric, r["detectable_diff"]), SEEDS_NEEDED: fmt.seeds(r["seeds_needed"])}


def compact_rows(headline: Rows) -> Rows:
    """The headline rows for a terminal: without the mean's interval, the detectable Δ and the seed spread."""
    drop = ("95% CI", DETECTABLE, "seed spread (acc, pp)")
    return [{k: v for k, v in row.items() if k not in drop} for row in headline]


def metric_rows(study: Study, summary: pd.DataFrame, metric: str) -> Rows:
    """The full comparison table of one metric."""
    rows = []
    for arm in study.arms:
        r = _row(summary, arm, metric)
        if r is None:
            continue
        rows.append({
            "arm": arm, "n": f"{r['n']}/{r['runs']}",
            "mean ± std": fmt.mean_std(metric, r["mean"], r["std"], r["n"]),
            "95% CI": fmt.interval(metric, r["ci_low"], r["ci_high"]),
            "Δ vs baseline": fmt.diff(metric, r["diff"]) if arm != study.baseline else "baseline",
            "Δ 95% CI (bootstrap)": fmt.diff_interval(metric, r["diff_low"], r["diff_high"]),
            "test": r["test"], "t": f"{r['t']:.3g}" if pd.notna(r["t"]) else "—", "p": fmt.p_value(r["p_value"]),
            "p Wilcoxon": fmt.p_value(r["p_wilcoxon"]), f"p ({r['correction']})": fmt.p_value(r["p_adjusted"]),
            "verdict": r["verdict"], **power_columns(metric, r), "diverged": _diverged(r),
        })
    return rows


def flatness_rows(study: Study, summary: pd.DataFrame) -> Rows:
    """Per arm, the primary metric then each end-of-training analysis: mean ± seed-to-seed std, its
    interval and test against the baseline, and the estimator's own noise (RMS over the arm's runs)."""
    from reglab.study.analysis import NOISE
    from reglab.study.stats import ANALYSIS_METRICS

    present = [m.column for m in ANALYSIS_METRICS if m.column in set(summary.get("metric", []))]
    if not present:
        return []
    done = study.runs[study.runs["status"] == "done"]
    rows = []
    for arm in study.arms:
        for metric in [primary_metric(summary), *present]:
            r = _row(summary, arm, metric)
            if r is None:
                continue
            noise = NOISE.get(metric)
            se = done.loc[done["arm"] == arm, noise].dropna() if noise in done else pd.Series(dtype=float)
            rows.append({
                "arm": arm, "metric": METRIC_BY_COLUMN[metric].label,
                "mean ± seed std": fmt.mean_std(metric, r["mean"], r["std"], r["n"]),
                "95% CI": fmt.interval(metric, r["ci_low"], r["ci_high"]),
                "estimator noise (per run)": fmt.spread(metric, float((se**2).mean() ** 0.5)) if len(se) else "—",
                "Δ vs baseline [bootstrap 95% CI]": "baseline" if arm == study.baseline else
                f"{fmt.diff(metric, r['diff'])} {fmt.diff_interval(metric, r['diff_low'], r['diff_high'])}",
                "test": r["test"], f"p ({r['correction']})": fmt.p_value(r["p_adjusted"]), "verdict": r["verdict"],
            })
    return rows


def stability_rows(stability: pd.DataFrame) -> Rows:
    return [{
        "arm": s["arm"], "finished / runs": f"{s['n']}/{s['runs']}",
        "diverged": f"{s['diverged']}/{s['runs']}",
        "fluctuation (mean ± std)": fmt.mean_std("fluctuation", s["fluctuation_mean"], s["fluctuation_std"],
                                                 s["n"]),
        "seed spread, test acc (pp)": fmt.spread("spread_test_acc", s["spread_test_acc"]),
        "seed spread, test loss": fmt.spread("spread_test_loss", s["spread_test_loss"]),
    } for _, s in stability.iterrows()]


def run_rows(study: Study) -> Rows:
    rows = []
    for _, r in study.runs.iterrows():
        rows.append({
            "run": r["run_id"], "arm": r["arm"], "seed": str(r["seed"]), "status": r["status"],
            "epochs": str(r["epochs"]), "final test acc": fmt.value("final_test_acc", r["final_test_acc"]),
            "final test loss": fmt.value("final_test_loss", r["final_test_loss"]),
            "seconds": f"{r['seconds']:.1f}" if pd.notna(r["seconds"]) else "—",
            "note": (f"diverged at epoch {int(r['diverged_epoch'])}" if pd.notna(r["diverged_epoch"]) else "")
            or (r["error"] or ""),
        })
    return rows


def md_text(text: str) -> str:
    """User text (title, description, arm names) as literal Markdown: no HTML, no emphasis, no links."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]#|])", r"\\\1", text)


def markdown_table(rows: Rows) -> str:
    if not rows:
        return "_(no rows)_\n"
    def cells(values) -> str:  # literal text: no table syntax, inline HTML, emphasis or links; one line
        return "| " + " | ".join(md_text(" ".join(str(v).splitlines())) for v in values) + " |"

    header = list(rows[0])
    return "\n".join([cells(header), cells(["---"] * len(header)), *(cells(r.values()) for r in rows)]) + "\n"


def robust_rows(robust: pd.DataFrame, baseline: str) -> Rows:
    """IQM with its stratified bootstrap interval and P(improvement) over the baseline with its interval."""
    rows = []
    for _, r in robust.iterrows():
        metric = r["metric"]
        rows.append({
            "arm": r["arm"], "n": str(r["n"]), "IQM": fmt.value(metric, r["iqm"]),
            "IQM 95% CI (stratified bootstrap)": fmt.interval(metric, r["iqm_low"], r["iqm_high"]),
            f"P(beats {baseline})": "baseline" if r["arm"] == baseline else fmt.probability(r["poi"]),
            "P 95% CI": fmt.probability_interval(r["poi_low"], r["poi_high"]),
        })
    return rows


def target_rows(table: pd.DataFrame) -> Rows:
    """Time to target per arm: k/n reached, median times, epochs of the runs that reached it."""
    def median(x: float, unit: str) -> str:
        if pd.isna(x):
            return "—"
        return "not reached" if x == float("inf") else f"{x:.4g} {unit}"

    return [{
        "arm": r["arm"], "reached": f"{r['reached']}/{r['n']}",
        "median epoch": median(r["median_epoch"], "epochs"),
        "median wall time": median(r["median_seconds"], "s"),
        "epochs of runs that reached it": ", ".join(map(str, r["epochs_reached"])) or "—",
    } for _, r in table.iterrows()]


def class_rows(study: Study) -> Rows:
    """Macro precision / recall / F1 and micro F1 (= accuracy) per arm, mean ± std over finished runs."""
    runs = study.runs[study.runs["status"] == "done"]
    rows = []
    for arm in study.arms:
        of_arm = runs[runs["arm"] == arm]
        if "macro_f1" not in of_arm or of_arm["macro_f1"].isna().all():
            continue
        row = {"arm": arm}
        for column, label in (("macro_precision", "macro precision"), ("macro_recall", "macro recall"),
                              ("macro_f1", "macro F1"), ("micro_f1", "micro F1 (= accuracy)")):
            values = of_arm[column].dropna()
            row[label] = fmt.mean_std(column, values.mean(), values.std(ddof=1) if len(values) > 1 else float("nan"),
                                      len(values))
        rows.append(row)
    return rows


def class_f1_rows(table: pd.DataFrame) -> Rows:
    """Per-class F1 by arm: one row per arm, one column per class (mean over runs)."""
    rows = []
    for arm, t in table.groupby("arm", sort=False):
        rows.append({"arm": arm, **{f"class {int(c)}": f"{f:.3f}" for c, f in zip(t["class"], t["f1_mean"],
                                                                                      strict=True)}})
    return rows
