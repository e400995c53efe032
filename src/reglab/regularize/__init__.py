"""Regularizers as small composable pieces: penalties, the max-norm constraint, optimizers and
schedules, dropout-family modules, Gaussian input noise, weight EMA, SWA, early stopping, sample
mixing and SAM. See docs/regularizers.md."""

from reglab.regularize.dropblock import DropBlock2d
from reglab.regularize.early_stopping import EarlyStopping
from reglab.regularize.ema import build_ema
from reglab.regularize.max_norm import apply_max_norm
from reglab.regularize.mixing import cutmix, mixup
from reglab.regularize.noise import add_input_noise
from reglab.regularize.optim import Schedule, build_optimizer, lr_factor
from reglab.regularize.penalties import Penalty, penalized_parameters
from reglab.regularize.sam import sam_gradients
from reglab.regularize.stochastic_depth import Residual, StochasticDepth, survival_probabilities

__all__ = [
    "DropBlock2d", "EarlyStopping", "Penalty", "Residual", "Schedule", "StochasticDepth", "add_input_noise",
    "apply_max_norm", "build_ema", "build_optimizer", "cutmix", "lr_factor", "mixup", "penalized_parameters",
    "sam_gradients", "survival_probabilities",
]
