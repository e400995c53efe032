"""reglab — a PyTorch laboratory for neural-network regularization.

    >>> import reglab
    >>> cfg = reglab.RunConfig.from_dict({"data": {"name": "mnist1d"}, "model": {"name": "mlp"}})
    >>> result = reglab.train_run(cfg)
"""

from reglab.config import ConfigError, RunConfig
from reglab.train import RunResult, load_trained, train_run

__version__ = "0.1.0"
__all__ = ["ConfigError", "RunConfig", "RunResult", "__version__", "load_trained", "train_run"]
