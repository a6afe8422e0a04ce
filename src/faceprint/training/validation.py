"""Verification metrics on pair distances (accuracy at the best threshold, TAR at a FAR).

Small on purpose: the evaluation module owns full reports; training needs one number per epoch and the
threshold to calibrate the saved model with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve


@dataclass(frozen=True)
class Verification:
    accuracy: float  # at the best threshold
    threshold: float  # distance threshold giving `accuracy` (same person when distance <= threshold)
    far: np.ndarray
    tar: np.ndarray

    def tar_at(self, far: float) -> float:
        ok = self.far <= far
        return float(self.tar[ok].max()) if ok.any() else 0.0


def verification_metrics(distances: np.ndarray, same: np.ndarray) -> Verification:
    same = np.asarray(same, bool)
    far, tar, thresholds = roc_curve(same, -np.asarray(distances, np.float64))
    n_pos, n_neg = same.sum(), (~same).sum()
    correct = tar * n_pos + (1 - far) * n_neg
    best = int(np.argmax(correct))
    threshold = float(min(-thresholds[best], 4.0))  # roc_curve's first threshold is +inf
    return Verification(float(correct[best] / len(same)), threshold, far, tar)
