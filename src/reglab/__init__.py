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

from typing import TYPE_CHECKING

from reglab.config import ConfigError, RunConfig
from reglab.lazy import lazy_attributes

if TYPE_CHECKING:
    from reglab.study import Study, StudyResult, StudySpec, load_spec, load_study, run_study
    from reglab.theory.training import train_run
    from reglab.train import RunResult, load_trained

__version__ = "0.1.0"

_LAZY = {
    "RunResult": "reglab.train", "load_trained": "reglab.train", "train_run": "reglab.theory.training",
    "Study": "reglab.study", "StudyResult": "reglab.study", "StudySpec": "reglab.study",
    "load_spec": "reglab.study", "load_study": "reglab.study", "run_study": "reglab.study",
}

__all__ = [
    "ConfigError", "RunConfig", "RunResult", "Study", "StudyResult", "StudySpec", "__version__", "load_spec",
    "load_study", "load_trained", "run_study", "train_run",
]


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
