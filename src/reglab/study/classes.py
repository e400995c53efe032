"""Per-class metrics of a run from its test-set confusion matrix C (rows: true class, columns: predicted).

For class k: precision_k = C_kk / Σ_i C_ik, recall_k = C_kk / Σ_j C_kj, F1_k = 2 P_k R_k / (P_k + R_k),
with 0 where a denominator is 0 (the class never predicted / never present), as scikit-learn's
``zero_division=0``. Macro averages the per-class values with equal weight; micro pools the counts
(for single-label classification micro precision = micro recall = micro F1 = accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassMetrics:
    precision: np.ndarray  # (C,)
    recall: np.ndarray  # (C,)
    f1: np.ndarray  # (C,)
    support: np.ndarray  # (C,) test examples per true class

    @property
    def macro(self) -> dict[str, float]:
        return {"precision": float(self.precision.mean()), "recall": float(self.recall.mean()),
                "f1": float(self.f1.mean())}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def class_metrics(confusion: Sequence[Sequence[int]]) -> ClassMetrics:
    """Per-class precision, recall, F1 and support of a confusion matrix."""
    c = np.asarray(confusion, dtype=float)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion: expected a square matrix (got shape {c.shape})")
    tp = np.diag(c)
    precision, recall = _ratio(tp, c.sum(axis=0)), _ratio(tp, c.sum(axis=1))
    return ClassMetrics(precision, recall, _ratio(2 * precision * recall, precision + recall), c.sum(axis=1))


def micro(confusion: Sequence[Sequence[int]]) -> dict[str, float]:
    """Micro precision / recall / F1: pooled over classes (each equals the accuracy)."""
    c = np.asarray(confusion, dtype=float)
    acc = float(np.trace(c) / c.sum()) if c.sum() else float("nan")
    return {"precision": acc, "recall": acc, "f1": acc}


def run_columns(confusion: Sequence[Sequence[int]] | None) -> dict[str, float]:
    """The columns a run gets in `Study.runs`: macro_precision/recall/f1 and micro_f1 (NaN without one)."""
    if not confusion:
        return {"macro_precision": np.nan, "macro_recall": np.nan, "macro_f1": np.nan, "micro_f1": np.nan}
    macro = class_metrics(confusion).macro
    return {"macro_precision": macro["precision"], "macro_recall": macro["recall"], "macro_f1": macro["f1"],
            "micro_f1": micro(confusion)["f1"]}
