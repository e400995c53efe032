"""The theory of why dropout works, and the tools to look: Zhang & Xu, *Implicit regularization of
dropout* (arXiv:2207.05952, IEEE TPAMI 2024).

* `dropout`      — R1 (dropout's learning-rate-independent implicit regularizer), R2 (learning-rate
  dependent), objectives L1–L4;
* `condensation` — neuron features, cosine similarity, effective ratio, an epoch tracker;
* `landscape`    — filter-normalized directions, 1-D / 2-D loss slices, interpolation (Li et al. 2018);
* `hessian`      — Hessian-vector products, top-k eigenpairs, spectral density, trace (sharpness);
* `plots`        — figures of all the above (matplotlib is imported only when a plot is first asked for).

Dropout ``p`` is the drop probability everywhere; the theory's keep probability is q = 1 − p.
"""

from reglab.theory.condensation import (
    CondensationTracker,
    CoverNotSolved,
    NeuronFeatures,
    cosine_similarity_matrix,
    effective_ratio_exact,
    effective_ratio_greedy,
    neuron_features,
    neuron_weights,
)
from reglab.theory.dropout import (
    OBJECTIVES,
    dropout_disabled,
    dropout_mode,
    dropout_r1,
    dropout_r2,
    objective_loss,
)
from reglab.theory.hessian import (
    Eigenpairs,
    HessianOperator,
    SpectralDensity,
    hessian_density,
    hessian_eigenpairs,
    hessian_top_eigenvalue,
    hessian_trace,
    hessian_vector_product,
)
from reglab.theory.landscape import (
    filter_normalized_direction,
    interpolate,
    loss_along_direction,
    loss_surface,
    named_direction,
)

_PLOTS = ("plot_cosine_similarity", "plot_effective_ratio", "plot_hessian_density", "plot_landscape_1d",
          "plot_landscape_2d", "plot_neuron_features")


def __getattr__(name: str):  # lazy plots: every run imports this package (`training`) and needs no matplotlib
    if name in _PLOTS:
        from reglab.theory import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'reglab.theory' has no attribute {name!r}")


__all__ = [*_PLOTS,
    "OBJECTIVES",
    "CondensationTracker",
    "Eigenpairs",
    "HessianOperator",
    "SpectralDensity",
    "CoverNotSolved",
    "NeuronFeatures",
    "cosine_similarity_matrix",
    "dropout_disabled",
    "dropout_mode",
    "dropout_r1",
    "dropout_r2",
    "effective_ratio_greedy",
    "effective_ratio_exact",
    "filter_normalized_direction",
    "hessian_density",
    "hessian_eigenpairs",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "hessian_vector_product",
    "interpolate",
    "loss_along_direction",
    "loss_surface",
    "named_direction",
    "neuron_features",
    "neuron_weights",
    "objective_loss",
]
