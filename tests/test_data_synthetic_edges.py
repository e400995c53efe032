"""fn1d and teacher-student properties found by mutation testing, checked against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from reglab.config import ConfigError, DataConfig
from reglab.data import load_dataset


def load(name: str, **options):
    return load_dataset(DataConfig(name=name, options=options))


def test_fn1d_refuses_an_empty_interval():
    with pytest.raises(ConfigError, match=r"data\.options\.x_max: must exceed x_min"):
        load("fn1d", x_min=1.5, x_max=1.5)
    with pytest.raises(ConfigError, match=r"data\.options\.x_max"):
        load("fn1d", x_min=2.0, x_max=1.0)


def test_fn1d_uniform_sampling_is_sorted_inside_the_interval_on_the_target():
    data = load("fn1d", target="sin", sampling="uniform", n_train=400, x_min=2.0, x_max=3.0, seed=1)
    x, y = data.x_train[:, 0], data.y_train[:, 0]
    assert len(x) == 400 and bool((x[1:] >= x[:-1]).all())  # sorted
    assert x.min() >= 2.0 and x.max() <= 3.0
    assert x.min() < 2.02 and x.max() > 2.98  # fills the interval (400 uniform draws)
    torch.testing.assert_close(y, torch.sin(x))
    other = load("fn1d", target="sin", sampling="uniform", n_train=400, x_min=2.0, x_max=3.0, seed=2)
    assert not torch.equal(other.x_train, data.x_train)  # seeded by `seed`


def test_fn1d_test_grid_spans_the_interval_evenly():
    data = load("fn1d", target="sin", x_min=-2.0, x_max=3.0, n_test=11)
    assert data.x_test[:, 0].tolist() == pytest.approx([-2.0 + 0.5 * i for i in range(11)], abs=1e-6)
    torch.testing.assert_close(data.y_test[:, 0], torch.sin(data.x_test[:, 0]))


def test_teacher_noise_is_on_training_targets_only_with_the_given_std():
    opts = {"d": 4, "m": 2, "n_train": 4000, "n_test": 50, "teacher_seed": 3, "seed": 5}
    clean, noisy = load("teacher-student", **opts), load("teacher-student", **opts, noise=0.5)
    assert torch.equal(clean.x_train, noisy.x_train) and torch.equal(clean.x_test, noisy.x_test)
    assert torch.equal(clean.y_test, noisy.y_test)  # test targets are the clean teacher
    residual = noisy.y_train - clean.y_train
    assert residual.std().item() == pytest.approx(0.5, rel=0.05)
    assert abs(residual.mean().item()) < 0.05


@pytest.mark.parametrize("m", [1, 3])
def test_teacher_output_weights_are_plus_minus_one_over_sqrt_m(m):
    """d = 1: each w_k = ±1, so f*(x) = c·tanh(x) with c = Σ ±1/√m, an odd multiple of 1/√m at most √m."""
    data = load("teacher-student", d=1, m=m, n_train=50, n_test=10, teacher_seed=0)
    x, y = data.x_train[:, 0].double(), data.y_train[:, 0].double()
    c = y / torch.tanh(x)
    assert (c - c[0]).abs().max() < 1e-5  # one constant
    allowed = {s * k / math.sqrt(m) for k in range(m % 2, m + 1, 2) for s in (1, -1)} - {0.0}
    assert min(abs(c[0].item() - a) for a in allowed) < 1e-5, (c[0].item(), allowed)
