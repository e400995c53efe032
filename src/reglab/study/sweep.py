"""Search parameters: ``--param NAME=VALUES`` options of `reglab sweep` and `reglab tune`.

Both run through `reglab.study.tune`: the grid sampler takes every listed value (the grid is their
product; arms are named like ``dropout=0.2,l2=1e-05``); random and TPE search draw from the same
parameters, a range a:b:n as the interval [a, b] (log-uniform for log:a:b:n), a list as categories.

VALUES is ``a:b:n`` (n evenly spaced values from a to b, both included), ``log:a:b:n`` (n values
spaced geometrically from a to b, both > 0), a comma list ``0.1,0.2`` or one value. NAME is a short
name (`SHORT_NAMES`, e.g. ``dropout``) or any dotted run-config path (e.g. ``optim.momentum``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from reglab.config import ConfigError, parse_value

SHORT_NAMES = {
    "dropout": "regularize.dropout.p", "l2": "regularize.l2", "l1": "regularize.l1",
    "weight_decay": "optim.weight_decay", "wd": "optim.weight_decay", "lr": "optim.lr",
    "stochastic_depth": "regularize.stochastic_depth.rate", "label_smoothing": "regularize.label_smoothing",
    "ema": "regularize.ema", "swa": "regularize.swa.epochs", "input_noise": "regularize.input_noise",
}
MAX_VALUES = 10_000  # values of one range: far more than any search trains, and a typo of a few digits is refused


@dataclass(frozen=True)
class SweepParam:
    name: str  # as written, used in arm names
    path: str  # dotted run-config path
    values: tuple[Any, ...]
    low: float | None = None  # a range's ends as written, integers when they are (None for a list of values)
    high: float | None = None
    log: bool = False


def parse_param(text: str) -> SweepParam:
    """``"dropout=0:0.6:7"`` -> SweepParam("dropout", "regularize.dropout.p", (0.0, 0.1, ..., 0.6))."""
    name, sep, spec = (part.strip() for part in text.partition("="))
    if not sep or not name or not spec:
        raise ConfigError(f"--param {text!r}: expected NAME=VALUES, e.g. dropout=0:0.6:7 or l2=log:1e-5:1e-2:4")
    if name not in SHORT_NAMES and "." not in name:
        raise ConfigError(f"--param {text!r}: unknown name {name!r} "
                          f"(short names: {', '.join(SHORT_NAMES)}; or a dotted config path)")
    try:
        values = _values(spec)
    except ValueError as err:
        raise ConfigError(f"--param {text!r}: {err}") from None
    log = spec.startswith("log:")
    low, high = (_number(end) for end in spec.split(":")[log:log + 2]) if ":" in spec else (None, None)
    return SweepParam(name, SHORT_NAMES.get(name, name), values, low=low, high=high, log=log)


def _values(spec: str) -> tuple[Any, ...]:
    values = _listed_values(spec)
    for i, value in enumerate(values):
        if value in values[:i]:  # a grid cell, a trial and an arm name per value: each must be distinct
            raise ValueError(f"{value!r} appears twice")
    return values


def _listed_values(spec: str) -> tuple[Any, ...]:
    parts = spec.split(":")
    if len(parts) == 1:
        values = tuple(parse_value(v.strip()) for v in spec.split(","))
        if "" in values:
            raise ValueError("empty value in the comma list")
        return values
    log = parts[0] == "log"
    if len(parts) != 3 + log:
        raise ValueError("a range is a:b:n or log:a:b:n")
    a, b, n = _number(parts[log]), _number(parts[log + 1]), _number(parts[log + 2])
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"the number of values must be an integer of at least 2 (got {parts[log + 2]})")
    if n > MAX_VALUES:
        raise ValueError(f"the number of values must be at most {MAX_VALUES} (got {n})")
    if log and (a <= 0 or b <= 0):
        raise ValueError("log ranges need a > 0 and b > 0")
    if log:
        return tuple(_round(a * (b / a) ** (i / (n - 1))) for i in range(n))
    if isinstance(a, int) and isinstance(b, int) and (b - a) % (n - 1) == 0:
        return tuple(a + (b - a) // (n - 1) * i for i in range(n))
    return tuple(_round(a + (b - a) * i / (n - 1)) for i in range(n))


def _number(text: str) -> int | float:
    value = parse_value(text.strip())
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{text.strip()!r} is not a number")
    return value


def _round(x: float) -> float:
    """Drop floating-point noise (0.30000000000000004 -> 0.3) so arm names stay readable."""
    return float(f"{x:.12g}")
