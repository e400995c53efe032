"""Training: the shared loop, its losses and the run-directory format."""

from reglab.train.loop import RunResult, Trainer, load_trained, resolve_device, train_run
from reglab.train.losses import make_criterion

__all__ = ["RunResult", "Trainer", "load_trained", "make_criterion", "resolve_device", "train_run"]
