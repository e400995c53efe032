"""reglab — a PyTorch laboratory for neural-network regularization.

    >>> import reglab
    >>> cfg = reglab.RunConfig.from_dict({"data": {"name": "mnist1d"}, "model": {"name": "mlp"}})
    >>> result = reglab.train_run(cfg)
"""

from typing import TYPE_CHECKING, Any

from reglab.config import ConfigError, RunConfig

if TYPE_CHECKING:
    from reglab.train import RunResult, load_trained, train_run

__version__ = "0.1.0"
__all__ = ["ConfigError", "RunConfig", "RunResult", "__version__", "load_trained", "train_run"]
_FROM_TRAIN = ("RunResult", "load_trained", "train_run")


def __getattr__(name: str) -> Any:
    """The training entry points import torch on first use, so `reglab --help` starts fast."""
    if name in _FROM_TRAIN:
        import reglab.train

        return getattr(reglab.train, name)
    raise AttributeError(f"module 'reglab' has no attribute {name!r}")
