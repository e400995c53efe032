"""Every analysis option reaches the number it controls, against computations by hand: the second landscape
direction, top-k and per-layer blocks against the dense Hessian, the threshold, the mode, the seed, the radius;
and the CLI passes each option through."""

import copy
import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import reglab
from reglab.cli import app
from reglab.theory import effective_ratio_greedy, filter_normalized_direction, hessian_trace
from reglab.theory.analyze import analyze_run, sharpness_metrics

SAMPLES = 16
BASE = {"data": {"name": "fn1d"}, "model": {"options": {"widths": [12]}},
        "regularize": {"dropout": {"p": 0.2}}, "optim": {"lr": 0.01},
        "train": {"epochs": 2, "batch_size": 0, "loss": "mse", "device": "cpu"}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    reglab.train_run(reglab.RunConfig.from_dict(BASE), run_dir=path)
    return path


@pytest.fixture(scope="module")
def trained(run_dir):
    _, model, data = reglab.load_trained(run_dir)
    return model.eval(), data.x_train[:SAMPLES], data.y_train[:SAMPLES]


def half_mse_loss(out, y):
    return 0.5 * (out - y).pow(2).sum(1).mean()


def loss_at(model, x, y, steps=(), train=False) -> float:
    """The loss of a copy moved by Σ coefficient·direction, in train or eval mode."""
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for coefficient, direction in steps:
            for p, d in zip(moved.parameters(), direction, strict=True):
                p.add_(coefficient * d)
        return half_mse_loss(moved.train(train)(x), y).item()


def dense_hessian(model, x, y) -> torch.Tensor:
    model = copy.deepcopy(model).double().eval()
    names, params = zip(*[(n, p.detach()) for n, p in model.named_parameters()], strict=True)
    sizes = [p.numel() for p in params]

    def loss(flat):
        values = {n: c.view_as(p) for n, c, p in zip(names, flat.split(sizes), params, strict=True)}
        return half_mse_loss(torch.func.functional_call(model, values, (x.double(),)), y.double())

    return torch.autograd.functional.hessian(loss, torch.cat([p.flatten() for p in params]))


def test_2d_landscape_uses_two_successive_directions_of_the_seed(run_dir, trained, tmp_path):
    model, x, y = trained
    surface = analyze_run(run_dir, landscape="2d", points=3, seed=4, samples=SAMPLES, out=tmp_path)["landscape"]
    g = torch.Generator().manual_seed(4)
    d1, d2 = filter_normalized_direction(model, g), filter_normalized_direction(model, g)
    losses = surface["losses"]  # losses[i][j] at (α_i, β_j), α, β ∈ {−1, 0, 1}
    assert losses[2][1] == pytest.approx(loss_at(model, x, y, [(1.0, d1)]), rel=1e-5)
    assert losses[1][2] == pytest.approx(loss_at(model, x, y, [(1.0, d2)]), rel=1e-5)
    assert losses[0][2] == pytest.approx(loss_at(model, x, y, [(-1.0, d1), (1.0, d2)]), rel=1e-5)


def test_top_k_per_layer_and_trace_probes_reach_the_hessian(run_dir, trained, tmp_path):
    model, x, y = trained
    h = dense_hessian(model, x, y)
    result = analyze_run(run_dir, hessian=True, per_layer=True, top_k=2, trace_samples=3, seed=5, samples=SAMPLES,
                         out=tmp_path)["hessian"]
    top2 = torch.linalg.eigvalsh(h)[-2:].flip(0)
    assert result["top_eigenvalue"] == pytest.approx(top2[0].item(), rel=1e-3)
    assert result["eigenvalues"] == pytest.approx(top2.tolist(), rel=1e-3)
    first = 12 + 12  # layer "0": weight (12, 1) and bias (12,) come first in the flat order
    blocks = {"0": h[:first, :first], "3": h[first:, first:]}
    assert set(result["layers"]) == set(blocks)
    for name, block in blocks.items():
        assert result["layers"][name]["top_eigenvalue"] == pytest.approx(torch.linalg.eigvalsh(block)[-1].item(),
                                                                          rel=1e-3)
    # Hutchinson with exactly trace_samples probes drawn from a generator seeded with the seed
    expected = hessian_trace(model, half_mse_loss, x, y, samples=3, generator=torch.Generator().manual_seed(5))
    assert result["trace_samples"] == 3
    assert (result["trace"], result["trace_se"]) == pytest.approx(expected, rel=1e-6)


def test_threshold_and_mode_reach_their_numbers(run_dir, trained, tmp_path):
    model, x, y = trained
    result = analyze_run(run_dir, condensation=True, threshold=0.5, samples=SAMPLES, out=tmp_path / "a")
    assert result["condensation"]["threshold"] == 0.5
    assert result["condensation"]["layers"]["0"]["effective_ratio"] == effective_ratio_greedy(model[0], 0.5)
    eval_loss = loss_at(model, x, y)
    plain = analyze_run(run_dir, landscape="1d", points=3, samples=SAMPLES, out=tmp_path / "e")
    assert plain["landscape"]["losses"][1] == pytest.approx(eval_loss, rel=1e-5)
    torch.manual_seed(0)
    masked = analyze_run(run_dir, landscape="1d", points=3, mode="train", samples=SAMPLES, out=tmp_path / "t")
    assert masked["mode"] == "train"
    assert masked["landscape"]["losses"][1] != pytest.approx(eval_loss, rel=1e-3)  # dropout masks at α = 0
    assert masked["loss"] != pytest.approx(eval_loss, rel=1e-3)


def _cli(*args):
    res = CliRunner().invoke(app, ["analyze", *args])
    assert res.exit_code == 0, res.output
    return res


def test_cli_passes_each_option_through(run_dir, trained, tmp_path):
    model, x, y = trained
    _cli(str(run_dir), "--landscape", "1d", "--points", "3", "--seed", "3", "--samples", str(SAMPLES),
         "--out", str(tmp_path / "seed"))
    seeded = json.loads((tmp_path / "seed" / "analysis.json").read_text())
    d = filter_normalized_direction(model, torch.Generator().manual_seed(3))
    assert seeded["seed"] == 3
    assert seeded["landscape"]["losses"][2] == pytest.approx(loss_at(model, x, y, [(1.0, d)]), rel=1e-5)

    _cli(str(run_dir), "--condensation", "--threshold", "0.5", "--mode", "train", "--samples", str(SAMPLES),
         "--out", str(tmp_path / "cond"))
    cond = json.loads((tmp_path / "cond" / "analysis.json").read_text())
    assert cond["mode"] == "train" and cond["condensation"]["threshold"] == 0.5
    assert cond["condensation"]["layers"]["0"]["effective_ratio"] == effective_ratio_greedy(model[0], 0.5)

    _cli(str(run_dir), "--per-layer", "--condensation", "--trace-samples", "2", "--samples", str(SAMPLES),
         "--out", str(tmp_path / "layers"))  # --per-layer asks for the Hessian, split by module
    layers = json.loads((tmp_path / "layers" / "analysis.json").read_text())
    assert set(layers["hessian"]["layers"]) == {"0", "3"} and "condensation" in layers
    assert "landscape" not in layers

    _cli(str(run_dir), "--per-layer", "--trace-samples", "2", "--samples", str(SAMPLES), "--out", str(tmp_path / "l"))
    alone = json.loads((tmp_path / "l" / "analysis.json").read_text())  # chosen alone, as --density: only it
    assert set(alone["hessian"]["layers"]) == {"0", "3"} and not {"landscape", "condensation"} & set(alone)

    _cli(str(run_dir), "--density", "--batch-size", "8", "--samples", str(SAMPLES), "--out", str(tmp_path / "d"))
    density = json.loads((tmp_path / "d" / "analysis.json").read_text())
    assert "hessian_density" in density and density["batch_size"] == 8
    assert not {"landscape", "hessian", "condensation"} & set(density)


def test_sharpness_metrics_threshold_radius_and_layer_traces(trained):
    model, x, y = trained
    values = sharpness_metrics(model, half_mse_loss, x, y, hessian=["trace"], landscape="1d", effective_ratio=True,
                               per_layer=True, trace_samples=200, directions=2, radius=0.25, threshold=0.5, seed=2)
    assert values["effective_ratio"] == effective_ratio_greedy(model[0], 0.5)
    h = dense_hessian(model, x, y)
    first = 24
    for name, block in {"0": h[:first, :first], "3": h[first:, first:]}.items():
        assert abs(values[f"hessian_trace/{name}"] - torch.trace(block).item()) <= \
            4 * values[f"hessian_trace_se/{name}"] + 1e-6
    g, rises = torch.Generator().manual_seed(2), []
    for _ in range(2):
        d = filter_normalized_direction(model, g)
        rises.append((loss_at(model, x, y, [(-0.25, d)]) + loss_at(model, x, y, [(0.25, d)])) / 2
                     - loss_at(model, x, y))
    assert values["landscape_rise"] == pytest.approx(sum(rises) / 2, rel=1e-4)


def test_sharpness_metrics_landscape_in_train_mode_uses_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 1))
    with torch.no_grad():
        model[1].running_mean.fill_(2.0)  # eval mode (running statistics) then differs from train mode
        model[1].running_var.fill_(4.0)
    model.eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 2, generator=g), torch.randn(20, 1, generator=g)
    values = sharpness_metrics(model, half_mse_loss, x, y, landscape="1d", directions=2, radius=0.5, mode="train")
    g, rises = torch.Generator().manual_seed(0), []
    for _ in range(2):
        d = filter_normalized_direction(model, g)
        rises.append((loss_at(model, x, y, [(-0.5, d)], train=True) + loss_at(model, x, y, [(0.5, d)], train=True))
                     / 2 - loss_at(model, x, y, train=True))
    assert values["landscape_rise"] == pytest.approx(sum(rises) / 2, rel=1e-4)
