"""Studies with [analysis]: values per run in the store, statistics by arm, report, resume, packed executor.

Tiny runs on CPU: mnist1d (256 training samples), a one-hidden-layer MLP of width 8, 2 epochs; the
Hessian is checked against the dense float64 Hessian of the same trained weights.
"""

import copy
import importlib.util
import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn

from reglab.config import ConfigError
from reglab.report import format as fmt
from reglab.report import write_report
from reglab.report.export import export
from reglab.report.tables import flatness_rows
from reglab.study import StudySpec, run_study
from reglab.study.packed import PackedExecutor
from reglab.train.loop import load_trained
from reglab.train.losses import make_criterion

BASE = {
    "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
    "model": {"name": "mlp", "options": {"widths": [8]}},
    "optim": {"name": "momentum", "lr": 0.05},
    "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 128},
}
ARMS = {"base": {}, "wd": {"optim": {"weight_decay": 0.05}}}
ANALYSIS = {"hessian": ["top", "trace"], "landscape": "1d", "effective_ratio": True, "samples": 64,
            "trace_samples": 20, "directions": 3}


def spec(seeds=2, analysis=ANALYSIS) -> StudySpec:
    extra = {"analysis": analysis} if analysis is not None else {}
    return StudySpec.from_dict({"name": "flat", "seeds": seeds, "base": BASE, "arms": ARMS, **extra})


def dense_top(run_dir, samples: int) -> float:
    cfg, model, data = load_trained(run_dir)
    model = copy.deepcopy(model).double()
    loss_fn = make_criterion(cfg.train.loss, data.num_classes)
    x, y = data.x_train[:samples].double(), data.y_train[:samples]
    names, params = zip(*[(n, p.detach()) for n, p in model.named_parameters()], strict=True)
    sizes = [p.numel() for p in params]

    def loss(flat):
        values = {n: c.view_as(p) for n, c, p in zip(names, flat.split(sizes), params, strict=True)}
        return loss_fn(torch.func.functional_call(model, values, (x,)), y)

    h = torch.autograd.functional.hessian(loss, torch.cat([p.flatten() for p in params]))
    return torch.linalg.eigvalsh(h)[-1].item()


def test_study_stores_analyses_and_reports_them_by_arm(tmp_path):
    result = run_study(spec(), tmp_path, progress=False)
    runs = result.runs.set_index("run_id")
    assert (runs["status"] == "done").all()
    for column in ("hessian_top", "hessian_trace", "hessian_trace_se", "landscape_rise", "landscape_rise_se",
                   "effective_ratio"):
        assert runs[column].notna().all(), column
    stored = json.loads((tmp_path / "runs" / "wd__s1" / "analysis" / "analysis.json").read_text())
    assert stored["mode"] == "eval" and stored["samples"] == 64 and stored["seed"] == 1
    assert stored["values"]["hessian_top"] == runs.loc["wd__s1", "hessian_top"]
    assert runs.loc["wd__s1", "hessian_top"] == pytest.approx(dense_top(tmp_path / "runs" / "wd__s1", 64), rel=1e-3)
    summary = json.loads((tmp_path / "runs" / "base__s0" / "summary.json").read_text())
    assert summary["final"]["hessian_trace"] == runs.loc["base__s0", "hessian_trace"]

    table = result.summary()
    top = table[table["metric"] == "hessian_top"].set_index("arm")
    assert list(top.index) == ["base", "wd"] and (top["n"] == 2).all()
    assert top.loc["base", "verdict"] == "baseline" and top.loc["wd", "verdict"] != "baseline"
    assert top.loc["wd", "mean"] == pytest.approx(runs.loc[["wd__s0", "wd__s1"], "hessian_top"].mean())
    html = write_report(result)["html"].read_text()
    assert "Flatness and condensation" in html and "estimator noise (per run)" in html
    assert "Hessian λ_max" in html and "loss rise at ±radius (1-D)" in html
    flatness = {(r["arm"], r["metric"]): r for r in flatness_rows(result, table)}
    wd = flatness[("wd", "Hessian λ_max")]  # the verdict's test and adjusted p, named as they are
    assert wd["test"] == top.loc["wd", "test"] and wd["p (holm)"] == fmt.p_value(top.loc["wd", "p_adjusted"])
    for path in export(tmp_path, "latex")["latex"]:  # pdfLaTeX: "Hessian λ_max" written as $\lambda$
        assert path.read_text().isascii(), path.name


def test_adding_analysis_later_analyses_without_retraining(tmp_path):
    plain = run_study(spec(seeds=1, analysis=None), tmp_path, progress=False)
    assert plain.runs["hessian_top"].isna().all()
    metrics = {r: (tmp_path / "runs" / r / "metrics.jsonl").read_text() for r in plain.runs["run_id"]}
    analysed = run_study(spec(seeds=1), tmp_path, progress=False)  # no --force: analyses are not in the hash
    assert sorted(analysed.executed) == ["base__s0", "wd__s0"] and analysed.runs["hessian_top"].notna().all()
    assert sorted(analysed.analysed) == ["base__s0", "wd__s0"]  # said so: "(2 trained before: analysed only)"
    assert metrics == {r: (tmp_path / "runs" / r / "metrics.jsonl").read_text() for r in metrics}  # not retrained
    again = run_study(spec(seeds=1), tmp_path, progress=False)
    assert again.executed == again.analysed == [] and sorted(again.skipped) == ["base__s0", "wd__s0"]
    changed = run_study(spec(seeds=1, analysis={**ANALYSIS, "directions": 2}), tmp_path, progress=False)
    assert sorted(changed.executed) == ["base__s0", "wd__s0"]


def test_packed_runs_are_analysed_where_they_trained(tmp_path):
    result = run_study(spec(seeds=2), tmp_path, executor=PackedExecutor(pack=2, device="cpu"), progress=False)
    assert (result.runs["status"] == "done").all() and result.runs["hessian_trace"].notna().all()
    assert all((tmp_path / "runs" / r / "analysis" / "analysis.json").exists() for r in result.runs["run_id"])


@pytest.mark.parametrize("analysis, message", [
    ({}, "analysis: asks for nothing"),
    ({"hessian": ["max"]}, "analysis.hessian.0: Input should be 'top' or 'trace'"),
    ({"landscape": "1d", "samples": 0}, "analysis.samples: Input should be greater than or equal to 1"),
])
def test_analysis_errors_name_the_field(analysis, message):
    with pytest.raises(ConfigError, match=message):
        spec(analysis=analysis)


def test_analyze_flag_fills_in_the_default_analyses():
    plain = spec(analysis=None)
    assert "analysis" not in plain.to_dict()
    assert plain.with_analysis().analysis.hessian == ["top", "trace"]
    assert plain.with_analysis().spec_hash == plain.spec_hash
    assert spec().with_analysis().analysis.directions == 3  # the spec's own section wins


@pytest.mark.ray
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray: pip install 'reglab[ray]'")
def test_ray_runs_carry_their_analyses_back(tmp_path):
    from reglab.study.ray_executor import RayExecutor

    result = run_study(spec(seeds=1), tmp_path, executor=RayExecutor(workers=1), progress=False)
    assert (result.runs["status"] == "done").all() and result.runs["landscape_rise"].notna().all()
    stored = json.loads((tmp_path / "runs" / "base__s0" / "analysis" / "analysis.json").read_text())
    assert stored["values"]["landscape_rise"] == result.runs.set_index("run_id").loc["base__s0", "landscape_rise"]


def test_compare_analyze_prints_and_reports_flatness_by_arm(tmp_path, capsys, monkeypatch):
    import sys

    from reglab.cli.app import main

    path = tmp_path / "flat.toml"
    path.write_text('name = "flat"\nseeds = 2\n[base]\n'
                    'data = { name = "mnist1d", train_subset = 256, test_subset = 256 }\n'
                    'model.options.widths = [8]\n'
                    'train = { epochs = 1, batch_size = 64, device = "cpu", eval_train_samples = 128 }\n'
                    '[arms.base]\n[arms.drop]\nregularize.dropout.p = 0.2\n')
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["reglab", "compare", str(path), "--out", str(out), "--workers", "1",
                                      "--pack", "off", "--analyze"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "flatness and condensation by arm" in printed and "Hessian λ_max" in printed
    html = (out / "report" / "report.html").read_text()
    assert "Flatness and condensation" in html and "effective ratio (greedy)" in html
    runs = pd.read_csv(out / "report" / "runs.csv")
    assert runs["hessian_trace_se"].notna().all() and (runs["hessian_trace_se"] > 0).all()


def test_analysis_uses_spec_seed_plus_run_seed(tmp_path, monkeypatch):
    """AnalysisSpec.seed is 'added to each run's seed for directions, start vectors and probes': the value
    passed to the estimators, not only the one written to analysis.json."""
    import json

    import reglab.theory.analyze as analyze_mod
    import reglab.train.loop as loop_mod
    from reglab.study.analysis import ANALYSIS_FILE, AnalysisSpec, analyze_trained

    data = SimpleNamespace(x_train=torch.zeros(8, 2), y_train=torch.zeros(8, dtype=torch.long), num_classes=2)
    cfg = SimpleNamespace(train=SimpleNamespace(loss="cross_entropy"))
    monkeypatch.setattr(loop_mod, "load_trained", lambda run_dir, device: (cfg, nn.Linear(2, 2), data))
    seen = {}

    def fake_metrics(model, loss_fn, x, y, **kwargs):
        seen.update(kwargs)
        return {"hessian_top": 1.0}

    monkeypatch.setattr(analyze_mod, "sharpness_metrics", fake_metrics)
    analyze_trained(tmp_path, AnalysisSpec(hessian=["top"], seed=5), seed=3, device="cpu")
    assert seen["seed"] == 8
    assert json.loads((tmp_path / ANALYSIS_FILE).read_text())["seed"] == 8


def test_a_runs_analysis_uses_its_own_threads(tmp_path, monkeypatch):
    """Analysis runs in the worker that trained the run, with the run's train.threads, not the worker's
    default (two workers at two threads each oversubscribed two cores: 3–13× slower)."""
    import reglab.study.analysis as analysis_mod
    from reglab.config import RunConfig
    from reglab.study.executors import RunTask

    seen = []
    monkeypatch.setattr(analysis_mod, "analyze_trained",
                        lambda *args, **kwargs: seen.append(torch.get_num_threads()) or {"hessian_top": 1.0})
    task = RunTask("a__s0", "a", 0, RunConfig.from_dict({"train": {"threads": 1}}), tmp_path, {"hessian": ["top"]})
    result = SimpleNamespace(status="done", device="cpu", final={}, to_dict=lambda: {})
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        analysis_mod.finish_analysis(task, result)
        assert seen == [1] and torch.get_num_threads() == 2 and result.final == {"hessian_top": 1.0}
    finally:
        torch.set_num_threads(previous)
