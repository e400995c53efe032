"""Reports: one self-contained, escaped HTML file, Markdown, CSV, and the numbers behind every figure."""

import base64
import html
import re
import shutil
import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

from reglab.cli import app
from reglab.report import export_csv, summary_table, write_report
from reglab.report.tables import markdown_table
from reglab.study import StudySpec, load_study, run_study

ARM = "<b>x</b>"
SPEC = {
    "name": "esc<script>alert(1)</script>", "description": "weights & <i>biases</i>", "seeds": 2,
    "base": {"data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
             "model": {"name": "mlp", "options": {"widths": [16]}}, "optim": {"name": "momentum", "lr": 0.05},
             "train": {"epochs": 3, "batch_size": 64, "device": "cpu", "eval_train_samples": 128}},
    "arms": {"base": {}, ARM: {"regularize": {"dropout": {"p": 0.2}}},
             "boom": {"optim": {"name": "sgd", "lr": 1e3}}},  # diverges
    "statistics": {"correction": "bh", "target": {"test_acc": 0.2}},
}
FIGURES = ("curves", "final", "gap", "norms", "stability", "robust", "profile", "target", "confusion", "class_f1")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    run_study(StudySpec.from_dict(SPEC), out, progress=False)
    return out


@pytest.fixture(scope="module")
def report(study_dir):
    return write_report(study_dir)


def test_html_is_self_contained_and_escaped(report):
    text = report["html"].read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<script" not in text.lower()  # no scripts at all, and the study name is escaped
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)  # nothing fetched
    assert "@import" not in text and "url(" not in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == len(FIGURES) and all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert "&lt;b&gt;x&lt;/b&gt;" in text and ARM not in text
    assert "weights &amp; &lt;i&gt;biases&lt;/i&gt;" in text
    for arm in ("base", "boom"):
        assert f"<td>{arm}</td>" in text
    assert "2/2 diverged" in text and "needs ≥ 2 seeds" in text and "Welch" in text
    assert "paired t" in text and "(p_bh=" in text and "Benjamini–Hochberg" in text  # same seeds: paired
    for section in ("Summary", "Figures", "Stability", "Runs", "Study spec", "Provenance", "Robust aggregates",
                    "Time to target: test_acc ≥ 0.2", "Per-class metrics (test set)", "Per-class F1 by arm"):
        assert f"<h2>{section}</h2>" in text
    for name in FIGURES:
        assert f'id="fig-{name}"' in text
    assert "torch" in text and "python" in text


def test_markdown_csv_and_figure_numbers(report, study_dir):
    md = report["markdown"].read_text()
    assert markdown_table([{"arm": "a **b** _c_ &lt; |"}]).splitlines()[-1] == (
        "| a \\*\\*b\\*\\* \\_c\\_ &amp;lt; \\| |")  # an arm name is shown literally, as in the HTML
    assert "&lt;b&gt;x&lt;/b&gt;" in md and "| arm |" in md and "![Training curves](figures/curves.png)" in md
    summary = pd.read_csv(report["summary"])
    assert {"arm", "metric", "n", "mean", "std", "ci_low", "ci_high", "diff", "diff_low", "diff_high",
            "p_value", "verdict", "diverged"} <= set(summary.columns)
    assert set(summary["arm"]) == {"base", ARM, "boom"}
    runs = pd.read_csv(report["runs"])
    assert len(runs) == 6 and len(pd.read_csv(report["epochs"])) == 2 * 3 + 2 * 3 + int(runs.loc[
        runs["arm"] == "boom", "epochs"].sum())
    for name in FIGURES:
        assert (report["figures"] / f"{name}.png").stat().st_size > 1000
        assert len(pd.read_csv(report["figures"] / f"{name}.csv")) > 0
    final = pd.read_csv(report["figures"] / "final.csv")
    study = load_study(study_dir)
    done = study.runs[study.runs["status"] == "done"]
    assert sorted(final["final_test_acc"]) == pytest.approx(sorted(done["final_test_acc"]))
    curves = pd.read_csv(report["figures"] / "curves.csv")
    base_acc = study.epochs[(study.epochs["arm"] == "base") & (study.epochs["epoch"] == 3)]["test_acc"]
    row = curves.query("arm == 'base' and metric == 'test_acc' and epoch == 3").iloc[0]
    assert row["mean"] == pytest.approx(base_acc.mean()) and row["std"] == pytest.approx(base_acc.std(ddof=1))
    assert summary_table(study).row_count == 3
    robust = pd.read_csv(report["robust"]).set_index("arm")
    base = done.loc[done["arm"] == "base", "final_test_acc"].sort_values().to_numpy()
    assert robust.loc["base", "iqm"] == pytest.approx(base.mean())  # two runs: the IQM is their mean
    target = pd.read_csv(report["target"]).set_index("arm")
    assert target.loc["boom", "reached"] == 0 and target.loc["boom", "n"] == 2  # diverged: kept, not reached
    assert (done["macro_f1"].between(0, 1)).all() and done["micro_f1"].to_numpy() == pytest.approx(
        done["final_test_acc"].to_numpy())  # micro F1 = accuracy
    confusion = pd.read_csv(report["figures"] / "confusion.csv")
    assert set(confusion["arm"]) == {"base", ARM} and confusion.groupby("arm")["count"].sum().eq(256).all()


def test_markdown_and_html_show_the_same_sections_tables_and_figures(report):
    page, md = report["html"].read_text(), report["markdown"].read_text()

    def headings(pattern: str, text: str) -> list[str]:  # as plain text: entities and backslashes undone
        return [html.unescape(re.sub(r"\\(.)", r"\1", h)) for h in re.findall(pattern, text, flags=re.M)]

    assert headings(r"^## (.+)$", md) == headings(r"<h2>(.+?)</h2>", page)
    assert headings(r"^### (.+)$", md) == headings(r"<h3>(.+?)</h3>", page)
    assert len(re.findall(r"^\| --- ", md, flags=re.M)) == page.count("<table>")
    assert re.findall(r"^!\[.*\]\(figures/(\w+)\.png\)$", md, flags=re.M) == re.findall(r'id="fig-(\w+)"', page)


def test_export_and_report_commands(study_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(study_dir), "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "r.csv")["run_id"].is_unique
    result = runner.invoke(app, ["export", str(study_dir), "--table", "summary",
                                 "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 0 and "verdict" in pd.read_csv(tmp_path / "s.csv")
    with pytest.raises(ValueError, match="table: unknown 'nope'"):
        export_csv(study_dir, tmp_path / "x.csv", "nope")
    result = runner.invoke(app, ["report", str(study_dir), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "report.html").exists() and "report:" in result.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
NO_CHROMIUM = "headless Chromium not found; install it with: apt-get install chromium (CI does)"


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_html_renders_in_headless_chromium_without_console_errors(report, tmp_path):
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1280,2400", f"--screenshot={shot}", report["html"].as_uri()],
        capture_output=True, text=True, timeout=90)
    assert shot.exists() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    failed = [line for line in proc.stderr.splitlines() if "net::ERR" in line or "Failed to load" in line]
    assert failed == [], failed


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_every_figure_decodes_in_headless_chromium(report, tmp_path):
    # a copy of the (script-free) report with a probe that records, after load, how many images decoded
    html = report["html"].read_text()
    probe = ("<script>addEventListener('load',()=>{const ok=[...document.images].filter("
             "i=>i.complete&&i.naturalWidth>0).length;document.body.dataset.images=document.images.length+':'+ok})"
             "</script></body>")
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe))
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=90)
    found = re.search(r'data-images="(\d+):(\d+)"', proc.stdout)
    assert found, proc.stderr[-2000:]
    total, decoded = map(int, found.groups())
    assert total == html.count("<img") == len(FIGURES) and decoded == total


def test_a_study_without_train_evaluation_has_no_gap_figure(tmp_path):
    spec = {"name": "nogap", "seeds": 2, "base": {**SPEC["base"], "train": {**SPEC["base"]["train"], "epochs": 1,
                                                                             "eval_train_samples": 0}},
            "arms": {"base": {}}}
    run_study(StudySpec.from_dict(spec), tmp_path, progress=False)
    figures = write_report(tmp_path)["figures"]
    assert (figures / "curves.png").exists() and not (figures / "gap.png").exists()


def test_export_of_the_robust_table_uses_the_headline_metric(tmp_path):
    """A regression study's headline is final_test_loss: its robust CSV ranks that, not accuracy."""
    from scipy import stats

    from reglab.study.results import Study

    losses = {"base": [0.50, 0.52, 0.55, 0.49], "wd": [0.40, 0.43, 0.41, 0.44]}
    runs = pd.DataFrame([{"run_id": f"{arm}__s{seed}", "arm": arm, "seed": seed, "status": "done",
                          "final_test_acc": float("nan"), "final_test_loss": value}
                         for arm, values in losses.items() for seed, value in enumerate(values)])
    spec = StudySpec.from_dict({"name": "regression", "base": {"data": {"name": "fn1d"}, "train": {"loss": "mse"}},
                                "arms": {"base": {}, "wd": {"optim": {"weight_decay": 0.01}}}, "seeds": 4})
    study = Study(path=None, spec=spec, runs=runs, epochs=pd.DataFrame())
    robust = pd.read_csv(export_csv(study, tmp_path / "robust.csv", "robust")).set_index("arm")
    assert (robust["metric"] == "final_test_loss").all()
    assert robust.loc["wd", "iqm"] == pytest.approx(stats.trim_mean(losses["wd"], 0.25))


def test_the_statistics_run_once_per_setting_and_follow_the_baseline(study_dir, tmp_path, monkeypatch):
    """The table, the report and the flatness table share one pass of `summarize`; changing the
    baseline (as `reglab report --baseline` does) computes a new one."""
    import reglab.study.results as results

    calls = []
    real = results.summarize
    monkeypatch.setattr(results, "summarize", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    study = load_study(study_dir)
    write_report(study, tmp_path / "r")
    summary_table(study)
    first = study.summary()
    assert calls == ["base"]
    first.loc[:, "mean"] = -1.0  # a caller's edit does not reach the cached table
    assert (study.summary()["mean"] != -1.0).any()
    study.spec = study.spec.with_statistics(baseline=ARM)
    study.summary()
    study.spec = study.spec.with_statistics(correction="holm")
    study.summary()
    assert calls == ["base", ARM, ARM]
