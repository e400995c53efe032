"""How many training samples an epoch evaluates for the generalization-gap metrics.

After every epoch the loop evaluates the model (eval mode) on the test set and on the first
`n` training samples, giving ``train_eval_loss`` / ``train_eval_acc`` and so the gaps
``gap_acc = train_eval_acc − test_acc`` and ``gap_loss = test_loss − train_eval_loss``.

A fixed 10,000-sample train evaluation is out of proportion on a small training set (6,000
images: training on 6,000, then evaluating 6,000 + the 10,000 test images). ``eval_train_samples =
"auto"`` sizes it to the training set instead::

    n = min(n_train, 10_000, max(1_000, n_train // 5))

One fifth of the samples, each forward pass costing a third to two thirds of a training step, is
7–13% of an epoch's training; never more than the 10,000 samples used before; at least 1,000 samples,
because the standard error of an accuracy p measured on n samples is √(p(1 − p)/n): ≤ 0.016 at
n = 1,000 and ≤ 0.005 at 10,000, below the gaps of a few percent that regularizers change. An integer
fixes `n` (0: off). See docs/performance.md ("Cost of evaluation").
"""

from __future__ import annotations

from typing import Literal

AUTO_FRACTION = 5
"""`auto` evaluates one training sample in this many."""
AUTO_MIN, AUTO_MAX = 1_000, 10_000
"""Bounds of the `auto` size (before capping at the training-set size)."""


def train_eval_size(requested: int | Literal["auto"], n_train: int) -> int:
    """The number of training samples to evaluate per epoch for `requested` (an int or ``"auto"``)."""
    if requested == "auto":
        requested = min(AUTO_MAX, max(AUTO_MIN, n_train // AUTO_FRACTION))
    return min(int(requested), n_train)
