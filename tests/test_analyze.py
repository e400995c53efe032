"""`reglab analyze` and condensation tracking on a tiny trained run, against independent computations.

Independent references: the eval loss by hand (½‖f − y‖² averaged over samples), a loss slice point by
moving the weights in place, the dense float64 Hessian of the 97-parameter net (eigenvalues, trace).
"""

import copy
import json
import math
import sys

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import reglab
from reglab.cli import app, main
from reglab.config import ConfigError
from reglab.report import write_report
from reglab.study import StudySpec, run_study
from reglab.theory import effective_ratio_greedy, filter_normalized_direction
from reglab.theory.analyze import analyze_run
from reglab.train.rundir import DamagedFile, read_metrics

EPOCHS, SAMPLES = 4, 16
BASE = {"data": {"name": "fn1d"}, "model": {"options": {"widths": [32]}},
        "regularize": {"dropout": {"p": 0.2}}, "optim": {"lr": 0.01},
        "train": {"epochs": EPOCHS, "batch_size": 0, "loss": "mse", "device": "cpu", "track_condensation": True}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    reglab.train_run(reglab.RunConfig.from_dict(BASE), run_dir=path)
    return path


@pytest.fixture(scope="module")
def trained(run_dir):
    _, model, data = reglab.load_trained(run_dir)
    return model, data.x_train[:SAMPLES], data.y_train[:SAMPLES]


def half_mse(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (0.5 * (model.eval()(x) - y).pow(2).sum(1).mean()).item()


def dense_hessian(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model = copy.deepcopy(model).double().eval()
    names, params = zip(*[(n, p.detach()) for n, p in model.named_parameters()], strict=True)
    sizes = [p.numel() for p in params]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        values = {n: c.view_as(p) for n, c, p in zip(names, flat.split(sizes), params, strict=True)}
        out = torch.func.functional_call(model, values, (x.double(),))
        return 0.5 * (out - y.double()).pow(2).sum(1).mean()

    return torch.autograd.functional.hessian(loss, torch.cat([p.flatten() for p in params]))


def test_library_analysis_matches_independent_computation(run_dir, trained, tmp_path):
    model, x, y = trained
    result = analyze_run(run_dir, landscape="1d", hessian=True, condensation=True, out=tmp_path, samples=SAMPLES,
                         trace_samples=200)
    assert json.loads((tmp_path / "analysis.json").read_text()) == json.loads(json.dumps(result))
    for name in ("landscape_1d.png", "cosine_0.png", "features_0.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    assert result["samples"] == SAMPLES and result["weights"].endswith("model.pt")

    eval_loss = half_mse(model, x, y)
    assert result["loss"] == pytest.approx(eval_loss, rel=1e-6)
    alphas, losses = result["landscape"]["alphas"], result["landscape"]["losses"]
    assert len(alphas) == 41 and alphas[0] == -1 and alphas[20] == 0 and alphas[-1] == 1
    assert losses[20] == pytest.approx(eval_loss, rel=1e-5)
    moved = copy.deepcopy(model)  # α = 1 by hand, the direction drawn like the analysis (seed 0)
    with torch.no_grad():
        for p, d in zip(moved.parameters(), filter_normalized_direction(model, torch.Generator().manual_seed(0)),
                        strict=True):
            p.add_(d)
    assert losses[-1] == pytest.approx(half_mse(moved, x, y), rel=1e-5)

    h = dense_hessian(model, x, y)
    top = torch.linalg.eigvalsh(h)[-1].item()
    hess = result["hessian"]
    assert top > 0 and hess["top_eigenvalue"] == pytest.approx(top, rel=0.01)
    assert hess["trace_samples"] == 200 and abs(hess["trace"] - torch.trace(h).item()) < 4 * hess["trace_se"]

    layers = result["condensation"]["layers"]
    assert list(layers) == ["0"]  # the 1-neuron output layer has no pairs to condense
    ratio = layers["0"]["effective_ratio"]
    assert 0 < ratio <= 1 and layers["0"]["neurons"] == 32
    assert ratio == effective_ratio_greedy(model[0]) == read_metrics(run_dir / "metrics.jsonl")[-1]["effective_ratio/0"]


def test_cli_on_a_checkpoint_and_with_defaults(run_dir, trained, tmp_path):
    model, x, y = trained
    runner = CliRunner()
    out = tmp_path / "two"
    res = runner.invoke(app, ["analyze", str(run_dir / "checkpoint.pt"), "--landscape", "2d", "--points", "5",
                              "--samples", str(SAMPLES), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "loss (eval mode)" in res.output and "analysis.json" in res.output
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["weights"].endswith("checkpoint.pt") and set(saved) >= {"loss", "landscape"}
    assert "hessian" not in saved and "condensation" not in saved
    surface = saved["landscape"]["losses"]
    assert len(surface) == 5 and all(len(row) == 5 for row in surface)
    assert surface[2][2] == pytest.approx(half_mse(model, x, y), rel=1e-5)
    assert (out / "landscape_2d.png").exists()

    res = runner.invoke(app, ["analyze", str(run_dir), "--samples", str(SAMPLES), "--trace-samples", "10"])
    assert res.exit_code == 0, res.output
    assert "Hessian top eigenvalue" in res.output and "effective ratio, layer 0" in res.output
    saved = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    assert {"landscape", "hessian", "condensation"} <= set(saved) and len(saved["landscape"]["alphas"]) == 41


def test_errors_name_the_file(run_dir, tmp_path, capsys, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere: no such run directory"):
        analyze_run(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text((run_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no model.pt or checkpoint.pt"):
        analyze_run(tmp_path)
    with pytest.raises(ValueError, match="config.json: expected a run directory or its model.pt"):
        analyze_run(tmp_path / "config.json")
    with pytest.raises(ValueError, match="landscape: expected 1d or 2d"):
        analyze_run(run_dir, landscape="3d")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.pt").write_bytes((run_dir / "model.pt").read_bytes())
    with pytest.raises(FileNotFoundError, match="config.json: no run config"):
        analyze_run(tmp_path / "w" / "model.pt")

    monkeypatch.setattr(sys, "argv", ["reglab", "analyze", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = "".join(capsys.readouterr().err.split())  # rich wraps long lines at any width
    assert err.startswith("error:") and "nowhere:nosuchrundirectory" in err


def test_weights_of_another_model_are_refused_naming_the_file(run_dir, tmp_path, capsys, monkeypatch):
    """A model.pt copied from a run of other widths: one line naming it (exit 2), not an internal error."""
    config = json.loads((run_dir / "config.json").read_text())
    config["model"]["options"]["widths"] = [8]
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.pt").write_bytes((run_dir / "model.pt").read_bytes())
    with pytest.raises(DamagedFile, match=r"model.pt: does not fit the model of .*config.json \(RuntimeError\)"):
        reglab.load_trained(tmp_path)
    monkeypatch.setattr(sys, "argv", ["reglab", "analyze", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = "".join(capsys.readouterr().err.split())  # rich wraps long lines at any width
    assert err.startswith("error:") and "model.pt:doesnotfitthemodel" in err


def test_tracking_logs_effective_ratio_per_epoch(run_dir):
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    assert all(0 < r["effective_ratio/0"] <= 1 for r in records)
    untracked = reglab.train_run(reglab.RunConfig.from_dict(BASE).override({"train.track_condensation": False}))
    assert not any(k.startswith("effective_ratio/") for k in untracked.epochs[-1])
    with pytest.raises(ConfigError, match="train.track_condensation"):
        reglab.RunConfig.from_dict(BASE).override({"train.track_condensation": "sometimes"})


def test_study_report_plots_effective_ratio_per_arm(tmp_path):
    spec = {"name": "condense", "seeds": 2, "base": BASE,
            "arms": {"plain": {"regularize": {"dropout": {"p": 0.0}}}, "dropout": {}}}
    run_study(StudySpec.from_dict(spec), tmp_path, progress=False)
    paths = write_report(tmp_path)
    assert 'id="fig-effective_ratio"' in paths["html"].read_text()
    assert (paths["figures"] / "effective_ratio.png").read_bytes().startswith(b"\x89PNG")
    numbers = pd.read_csv(paths["figures"] / "effective_ratio.csv")
    epochs = pd.read_csv(paths["epochs"])
    expected = epochs.groupby(["arm", "epoch"])["effective_ratio/0"].mean()
    assert len(numbers) == 2 * EPOCHS and set(numbers["metric"]) == {"effective_ratio/0"}
    for row in numbers.itertuples():
        assert row.n == 2 and math.isclose(row.mean, expected[(row.arm, row.epoch)], rel_tol=1e-9)

    run = next((tmp_path / "runs").iterdir())  # a study's run analyses like any run
    assert 0 < analyze_run(run, condensation=True, samples=SAMPLES)["condensation"]["layers"]["0"][
        "effective_ratio"] <= 1


def test_analysis_states_its_mode_and_splits_by_layer(run_dir, trained, tmp_path):
    from reglab.theory.hessian import parameter_blocks

    model, x, y = trained
    result = analyze_run(run_dir, hessian=True, out=tmp_path, samples=SAMPLES, trace_samples=10, mode="train",
                         per_layer=True, density=True, top_k=2)
    stored = json.loads((tmp_path / "analysis.json").read_text())
    assert stored["mode"] == "train" and analyze_run(run_dir, out=tmp_path / "e", samples=SAMPLES)["mode"] == "eval"
    assert set(stored["hessian"]["layers"]) == set(parameter_blocks(model)) == {"0", "3"}
    assert len(stored["hessian"]["eigenvalues"]) == 2
    assert stored["hessian"]["eigenvalues"][0] >= stored["hessian"]["eigenvalues"][1]
    assert abs(sum(stored["hessian_density"]["weights"][0]) - 1) < 1e-5
    assert (tmp_path / "hessian_density.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="mode: expected eval or train"):
        analyze_run(run_dir, out=tmp_path, mode="test")
    assert result["loss"] > 0


def test_sharpness_metrics_against_dense_hessian_and_by_hand(trained):
    from reglab.theory.analyze import sharpness_metrics

    model, x, y = trained
    values = sharpness_metrics(model, lambda out, t: 0.5 * (out - t).pow(2).sum(1).mean(), x, y,
                               hessian=["top", "trace"], landscape="1d", effective_ratio=True, per_layer=True,
                               trace_samples=200, directions=3, radius=0.5)
    h = dense_hessian(model, x, y)
    assert values["hessian_top"] == pytest.approx(torch.linalg.eigvalsh(h)[-1].item(), rel=1e-3)
    assert abs(values["hessian_trace"] - torch.trace(h).item()) < 4 * values["hessian_trace_se"]
    first = 32 * 1 + 32  # layer "0": weight (32, 1) and bias (32,) come first in the flat order
    assert values["hessian_top/0"] == pytest.approx(torch.linalg.eigvalsh(h[:first, :first])[-1].item(), rel=1e-3)
    generator, rises = torch.Generator().manual_seed(0), []
    for _ in range(3):
        d = filter_normalized_direction(model, generator)
        losses = []
        for a in (-0.5, 0.5):
            moved = copy.deepcopy(model)
            with torch.no_grad():
                for p, t in zip(moved.parameters(), d, strict=True):
                    p.add_(a * t)
            losses.append(half_mse(moved, x, y))
        rises.append(sum(losses) / 2 - half_mse(model, x, y))
    assert values["landscape_rise"] == pytest.approx(sum(rises) / 3, rel=1e-4)
    assert values["landscape_rise_se"] == pytest.approx(torch.tensor(rises).std().item() / 3**0.5, rel=1e-3)
    assert values["effective_ratio"] == effective_ratio_greedy(model[0])
