"""The report's numbers in their documented units, and the headline row's columns, on hand-built tables."""

import types

import pandas as pd


def test_report_numbers_are_formatted_in_the_documented_units():
    """Accuracies and their spreads in percent / pp, differences signed, intervals with both ends."""
    from reglab.report import format as fmt

    assert fmt.mean_std("final_test_acc", 0.713, 0.012, 3) == "71.30% ± 1.20 (n=3)"  # the docstring's example
    assert fmt.spread("final_test_acc", 0.0125) == "1.25"
    assert fmt.diff("final_test_acc", 0.0123) == "+1.23 pp" and fmt.diff("final_test_acc", -0.0123) == "-1.23 pp"
    assert fmt.diff_interval("final_test_acc", -0.01, 0.03) == "[-1.00, +3.00]"
    assert fmt.diff_interval("final_test_loss", -0.01, 0.03) == "[-0.01, +0.03]"
    assert fmt.interval("final_test_acc", 0.70, 0.72) == "[70.00%, 72.00%]"
    assert fmt.probability_interval(0.1, 0.9) == "[0.10, 0.90]"
    # F1, precision, recall: fractions to four decimals, mean and std alike (not 0.767 ± 0.00475)
    assert fmt.mean_std("macro_f1", 0.767, 0.00476, 3) == "0.7670 ± 0.0048 (n=3)"
    assert fmt.mean_std("macro_precision", 0.7331, 0.00248, 3) == "0.7331 ± 0.0025 (n=3)"
    assert fmt.mean_std("final_test_loss", 0.767, 0.00475, 3) == "0.767 ± 0.00475 (n=3)"  # losses: significant digits
    assert fmt.diff("macro_f1", -0.003822) == "-0.0038" and fmt.diff_interval("macro_f1", -0.0209, 0.00595) == \
        "[-0.0209, +0.0060]"
    assert fmt.magnitude("final_test_acc", 0.0214) == "2.14 pp"
    assert fmt.magnitude("final_test_loss", 0.01234) == "0.0123"
    assert [fmt.seeds(n) for n in (7.0, float("inf"), float("nan"))] == ["7", "> 10,000", "—"]


def test_headline_row_shows_the_ci_the_adjusted_p_and_the_finished_runs_of_the_gap():
    """The interval with both ends, the adjusted p beside the verdict it decided, the gap over the
    finished runs only (a diverged run is not counted)."""
    from reglab.report.tables import headline_rows
    from reglab.study.stats import METRIC_BY_COLUMN

    def row(arm, metric, mean, **kw):
        base = {"arm": arm, "metric": metric, "mean": mean, "std": 0.01, "n": 3, "runs": 4, "unfinished": 0,
                "diverged": 1, "ci_low": mean - 0.02, "ci_high": mean + 0.02, "diff": float("nan"),
                "diff_low": float("nan"), "diff_high": float("nan"), "test": "paired t", "correction": "holm",
                "p_value": float("nan"), "p_adjusted": float("nan"), "verdict": "baseline",
                "detectable_diff": float("nan"), "seeds_needed": float("nan")}
        return base | kw

    summary = pd.DataFrame([
        row("base", "final_test_acc", 0.70), row("base", "gap_acc", 0.05),
        row("wd", "final_test_acc", 0.75, diff=0.05, diff_low=0.01, diff_high=0.09, p_value=0.01,
            p_adjusted=0.04, verdict="better", detectable_diff=0.021, seeds_needed=7.0),
        row("wd", "gap_acc", 0.03),
    ])
    stability = pd.DataFrame([{"arm": a, "fluctuation_mean": 0.1, "spread_test_acc": 0.01} for a in ("base", "wd")])
    study = types.SimpleNamespace(arms=["base", "wd"], baseline="base")
    rows = headline_rows(study, summary, stability)
    wd = rows[1]
    label = METRIC_BY_COLUMN["final_test_acc"].label
    assert wd[f"{label} (mean ± std)"] == "75.00% ± 1.00 (n=3)"
    assert wd["95% CI"] == "[73.00%, 77.00%]"
    assert wd["Δ vs baseline [bootstrap 95% CI]"] == "+5.00 pp [+1.00, +9.00]"
    assert wd["p (holm)"] == "0.04"  # the adjusted p, next to the verdict it decided
    assert wd["gap acc (train − test)"] == "3.00% ± 1.00 (n=3)"
    assert wd["diverged"] == "1/4 diverged"
    assert (wd["detectable |Δ|"], wd["seeds to detect Δ"]) == ("2.10 pp", "7")
    assert (rows[0]["detectable |Δ|"], rows[0]["seeds to detect Δ"]) == ("—", "—")
