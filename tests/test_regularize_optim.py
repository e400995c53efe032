"""Optimizer factory and learning-rate schedules against hand formulas."""

import math

import pytest
import torch
from torch import nn

from reglab.config import ConfigError, OptimConfig, RegularizeConfig
from reglab.regularize.optim import Schedule, build_optimizer, lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")


def _optim(**schedule) -> OptimConfig:
    lr = schedule.pop("lr", 0.1)
    return OptimConfig(name="sgd", lr=lr, schedule=schedule)


def _factors(cfg: OptimConfig, steps: int, *, spe: int, total: int) -> list[float]:
    return [lr_factor(k, optim=cfg, steps_per_epoch=spe, total_steps=total) for k in range(steps)]


def test_linear_warmup():
    cfg = _optim(warmup_epochs=2)  # W = 20 steps
    expected = [(k + 1) / 20 for k in range(20)] + [1.0] * 5
    assert _factors(cfg, 25, spe=10, total=100) == pytest.approx(expected)
    frac = _optim(warmup_epochs=0.15)  # W = 1.5 steps: capped at 1
    assert _factors(frac, 3, spe=10, total=100) == pytest.approx([1 / 1.5, 1.0, 1.0])


def test_step_schedule():
    cfg = _optim(name="step", step_size=2, gamma=0.5)
    assert _factors(cfg, 40, spe=5, total=40) == pytest.approx([0.5 ** (k // 10) for k in range(40)])


def test_cosine_with_min_lr_and_warmup():
    cfg = _optim(name="cosine", min_lr=0.01)  # floor f = 0.1
    got = _factors(cfg, 101, spe=10, total=100)
    assert got == pytest.approx([0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 100)) for k in range(101)])
    assert got[0] == 1.0 and got[50] == pytest.approx(0.55) and got[100] == pytest.approx(0.1)
    warm = _optim(name="cosine", warmup_epochs=1)  # W = 10, then cosine over the remaining 90 steps
    got = _factors(warm, 101, spe=10, total=100)
    assert got[:10] == pytest.approx([(k + 1) / 10 for k in range(10)])
    assert got[10:] == pytest.approx([0.5 * (1 + math.cos(math.pi * (k - 10) / 90)) for k in range(10, 101)])


def _torch_factors(opt: torch.optim.Optimizer, scheduler, steps: int) -> list[float]:
    """The lr factor a torch scheduler sets before each of `steps` optimizer steps (base lr 0.1)."""
    factors = []
    for _ in range(steps):
        factors.append(opt.param_groups[0]["lr"] / 0.1)
        opt.step()
        scheduler.step()
    return factors


def test_linear_decay_matches_torchs_linear_lr_with_and_without_warmup():
    """Against torch's own schedulers: `LinearLR` from 1 to f over T steps; with warm-up, `SequentialLR`
    of a `LinearLR` from 1/W to 1 over the W warm-up steps, then one from 1 to f over T − W."""
    LinearLR = torch.optim.lr_scheduler.LinearLR
    opt = _sgd()
    expected = _torch_factors(opt, LinearLR(opt, start_factor=1.0, end_factor=0.2, total_iters=100), 110)
    assert _factors(_optim(name="linear", min_lr=0.02), 110, spe=10, total=100) == pytest.approx(expected)
    assert expected[50] == pytest.approx(0.6) and expected[100:] == pytest.approx([0.2] * 10)

    opt = _sgd()  # W = 20, then 1 → 0 over 80 steps
    warmup_then_decay = torch.optim.lr_scheduler.SequentialLR(opt, [
        LinearLR(opt, start_factor=1 / 20, end_factor=1.0, total_iters=19),
        LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=80)], milestones=[20])
    expected = _torch_factors(opt, warmup_then_decay, 101)
    got = _factors(_optim(name="linear", warmup_epochs=2), 101, spe=10, total=100)
    assert got == pytest.approx(expected, abs=1e-12)


def _sgd(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_schedule_drives_optimizer_lr_per_step():
    cfg = _optim(name="cosine", warmup_epochs=1, min_lr=0.001)
    opt = _sgd()
    sched = Schedule(opt, cfg, steps_per_epoch=4, total_steps=20)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1 * f for f in _factors(cfg, 20, spe=4, total=20)])


def test_plateau_reduces_after_patience():
    """torch's convention: the lr is cut once more than `patience` epochs failed to improve."""
    opt = _sgd()
    sched = Schedule(opt, _optim(name="plateau", patience=2, gamma=0.5), steps_per_epoch=3, total_steps=30)
    lrs = []
    for loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.5]:
        for _ in range(3):
            opt.step()
            sched.step()  # per-step schedule is a no-op for plateau
        sched.epoch_end(loss)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])
    state = sched.state_dict()
    other = Schedule(opt, _optim(name="plateau", patience=2, gamma=0.5), steps_per_epoch=3, total_steps=30)
    other.load_state_dict(state)
    assert other.plateau.num_bad_epochs == sched.plateau.num_bad_epochs


@pytest.mark.parametrize("schedule, field", [
    ({"name": "plateau", "warmup_epochs": 1}, "optim.schedule.warmup_epochs"),
    ({"name": "plateau", "gamma": 1.0}, "optim.schedule.gamma"),
    ({"name": "cosine", "min_lr": 1.0}, "optim.schedule.min_lr"),
])
def test_schedule_config_errors_name_the_field(schedule, field):
    with pytest.raises(ConfigError, match=field):
        Schedule(_sgd(), _optim(**schedule), steps_per_epoch=1, total_steps=1)


@pytest.mark.parametrize("name, cls, extra", [
    ("sgd", torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
    ("momentum", torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
    ("nesterov", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", torch.optim.RMSprop, {"alpha": 0.99, "momentum": 0}),
    ("adam", torch.optim.Adam, {"betas": (0.9, 0.999)}),
    ("adamw", torch.optim.AdamW, {"betas": (0.9, 0.999)}),
])
def test_build_optimizer(name, cls, extra):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = build_optimizer(model, OptimConfig(name=name, lr=0.01, weight_decay=0.1), RegularizeConfig())
    assert type(opt) is cls
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert [id(p) for p in decayed["params"]] == [id(model[0].weight), id(model[2].weight)]
    assert all(decayed[k] == v for k, v in extra.items())


def test_nesterov_without_momentum_names_field():
    with pytest.raises(ConfigError, match="optim.momentum"):
        build_optimizer(nn.Linear(2, 2), OptimConfig(name="nesterov", momentum=0.0), RegularizeConfig())


def test_decoupled_vs_coupled_decay_one_step():
    """With a zero data gradient, AdamW shrinks w by exactly lr·λ·w; Adam's coupled decay λw is
    normalised by √v̂ = |λw|, so every weight moves by lr·λw/(|λw| + eps) ≈ lr·sign(w), whatever λ is."""
    torch.manual_seed(0)
    for name, lam in [("adamw", 0.1), ("adam", 0.1), ("adam", 1e-3)]:
        model = nn.Linear(5, 3, bias=False).double()
        w0 = model.weight.detach().clone()
        opt = build_optimizer(model, OptimConfig(name=name, lr=0.01, weight_decay=lam), RegularizeConfig())
        model.weight.grad = torch.zeros_like(w0)
        opt.step()
        step = w0 - model.weight.detach()
        coupled = lam * w0
        expected = 0.01 * coupled if name == "adamw" else 0.01 * coupled / (coupled.abs() + 1e-8)
        torch.testing.assert_close(step, expected, rtol=1e-9, atol=1e-15)
        if name == "adam":
            assert (step - 0.01 * w0.sign()).abs().max() < 1e-5
