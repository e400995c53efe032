"""Synthetic regression sets for the dropout-theory experiments: `fn1d` and `teacher-student`.

Both are generated on the CPU from torch generators seeded by their options (not by the run seed), so
every run of a study sees the same data. Their targets are functions of the *raw* inputs, so they are
registered with ``normalize=False``: ``data.normalize`` does not rescale them.

``fn1d`` — inputs x (N, 1), targets y = f(x) (N, 1), with `target` f:

* ``tanh2``:       f(x) = tanh(x − 6) + tanh(x + 6),                  default x ∈ [−10, 10], 20 points;
* ``sin``:         f(x) = sin(x),                                     default x ∈ [−π, π],   20 points;
* ``relu-points``: f(x) = relu(x + ½) − 2·relu(x) + relu(x − ½),      default x ∈ [−1, 1],    5 points;
  a width-3 ReLU network (a hat of height ½ on [−½, ½]) seen at a handful of points.

Training inputs are `n_train` evenly spaced points of [`x_min`, `x_max`] (``sampling="grid"``) or
uniform draws (``"uniform"``, sorted); explicit `points` ``[[x, y], ...]`` replace the training set.
Gaussian noise of standard deviation `noise` is added to the training targets. The test set is the
clean target on `n_test` evenly spaced points of [`x_min`, `x_max`] (for plotting the learned function).

``teacher-student`` — inputs x ~ N(0, I_d) (N, d), targets f*(x) = Σ_{k≤m} a_k tanh(w_k·x) (N, 1), with
unit vectors w_k = g_k/‖g_k‖, g_k ~ N(0, I_d), and a_k = ±1/√m (random signs), drawn from `teacher_seed`
alone; the inputs (train first, then test) and the training-target noise N(0, noise²) come from `seed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor

from reglab.config import GENERATOR_SEED_LIMIT, ConfigError
from reglab.data.base import TensorData
from reglab.data.registry import Found, register_dataset

Seed = Annotated[int, Field(ge=0, lt=GENERATOR_SEED_LIMIT)]  # what torch.Generator.manual_seed takes
Size = Annotated[int, Field(gt=0, lt=2**31)]  # sample counts and dimensions
Number = Annotated[float, Field(allow_inf_nan=False)]
Noise = Annotated[float, Field(ge=0, allow_inf_nan=False)]

#: target name -> (f, default (x_min, x_max), default n_train)
TARGETS: dict[str, tuple[Callable[[Tensor], Tensor], tuple[float, float], int]] = {
    "tanh2": (lambda x: torch.tanh(x - 6) + torch.tanh(x + 6), (-10.0, 10.0), 20),
    "sin": (torch.sin, (-math.pi, math.pi), 20),
    "relu-points": (lambda x: torch.relu(x + 0.5) - 2 * torch.relu(x) + torch.relu(x - 0.5), (-1.0, 1.0), 5),
}


@register_dataset("fn1d", description="synthetic 1-D regression y = f(x): tanh2, sin or relu-points",
                  probe=lambda data_dir: Found("generated", "20 train / 201 test (default: tanh2)"),
                  normalize=False, shape=lambda **_: ((1,), 1))
def load_fn1d(*, data_dir: Path | None, download: bool,
              target: Literal["tanh2", "sin", "relu-points"] = "tanh2", n_train: Size | None = None,
              n_test: Size = 201, x_min: Number | None = None, x_max: Number | None = None,
              sampling: Literal["grid", "uniform"] = "grid",
              points: Annotated[list[tuple[Number, Number]], Field(min_length=1)] | None = None,
              noise: Noise = 0.0, seed: Seed = 0) -> TensorData:
    """None-valued options take the `target`'s defaults (see the module docstring)."""
    f, (lo, hi), n_default = TARGETS[target]
    lo, hi = lo if x_min is None else x_min, hi if x_max is None else x_max
    if lo >= hi:
        raise ConfigError(f"data.options.x_max: must exceed x_min (got x_min={lo}, x_max={hi})")
    if points is not None and n_train is not None:
        raise ConfigError("data.options.points: explicit points replace the training set; drop n_train")
    generator = torch.Generator().manual_seed(seed)
    if points is not None:
        x_train, y_train = torch.tensor(points, dtype=torch.float32).unbind(1)
    else:
        n = n_train or n_default
        x_train = torch.linspace(lo, hi, n) if sampling == "grid" else \
            (lo + (hi - lo) * torch.rand(n, generator=generator)).sort().values
        y_train = f(x_train)
    y_train = y_train + noise * torch.randn(len(y_train), generator=generator)
    x_test = torch.linspace(lo, hi, n_test)
    return TensorData("fn1d", x_train[:, None], y_train[:, None], x_test[:, None], f(x_test)[:, None])


@register_dataset("teacher-student", description="synthetic regression on x ~ N(0, I_d): a random "
                  "m-neuron tanh teacher", normalize=False,
                  probe=lambda data_dir: Found("generated", "1000 train / 1000 test (default)"),
                  shape=lambda d, **_: ((d,), 1))
def load_teacher_student(*, data_dir: Path | None, download: bool, d: Size = 10, m: Size = 1,
                         n_train: Size = 1000, n_test: Size = 1000, noise: Noise = 0.0, teacher_seed: Seed = 0,
                         seed: Seed = 0) -> TensorData:
    teacher = torch.Generator().manual_seed(teacher_seed)
    w = torch.randn(m, d, generator=teacher)
    w = w / w.norm(dim=1, keepdim=True)
    a = (2 * torch.randint(0, 2, (m,), generator=teacher) - 1) / math.sqrt(m)
    data = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, d, generator=data)
    y = (torch.tanh(x @ w.T) @ a)[:, None]  # (N, 1)
    y[:n_train] += noise * torch.randn(n_train, 1, generator=data)
    return TensorData("teacher-student", x[:n_train], y[:n_train], x[n_train:], y[n_train:])
