"""reglab — a PyTorch laboratory for neural-network regularization.

    >>> import reglab
    >>> cfg = reglab.RunConfig.from_dict({"data": {"name": "mnist1d"}, "model": {"name": "mlp"}})
    >>> result = reglab.train_run(cfg)                                   # doctest: +SKIP
    >>> spec = reglab.load_spec("quickstart", seeds=2, epochs=1)        # a preset, a TOML file or a StudySpec
    >>> study = reglab.run_study(spec, "studies/quick")                 # doctest: +SKIP
    >>> study = reglab.load_study("studies/quick")                      # doctest: +SKIP

Everything but the configuration is imported on first use, so ``import reglab`` (and ``reglab --help``)
does not load torch or pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from reglab.config import ConfigError, RunConfig

if TYPE_CHECKING:
    from reglab.study import Study, StudyResult, StudySpec, load_spec, load_study, run_study
    from reglab.train import RunResult, load_trained, train_run

__version__ = "0.1.0"

_LAZY = {
    "RunResult": "reglab.train", "load_trained": "reglab.train", "train_run": "reglab.train",
    "Study": "reglab.study", "StudyResult": "reglab.study", "StudySpec": "reglab.study",
    "load_spec": "reglab.study", "load_study": "reglab.study", "run_study": "reglab.study",
}

__all__ = [
    "ConfigError", "RunConfig", "RunResult", "Study", "StudyResult", "StudySpec", "__version__", "load_spec",
    "load_study", "load_trained", "run_study", "train_run",
]


def __getattr__(name: str) -> Any:
    """Import the public names on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'reglab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
