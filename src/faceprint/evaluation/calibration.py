"""Fitting a :class:`~faceprint.thresholds.Calibration` from labelled pairs: the threshold at a target
false-accept rate (the ROC arithmetic of ``metrics``) and a class-balanced logistic P(same | distance)
(scikit-learn). The table the runtime reads lives in ``faceprint.thresholds``."""

from __future__ import annotations

import numpy as np

from faceprint.evaluation.metrics import threshold_at_far
from faceprint.thresholds import DEFAULT_TARGET_FAR, Calibration


def fit_calibration(
    distances: np.ndarray,
    same: np.ndarray,
    *,
    embedder: str,
    version: str = "",
    target_far: float = DEFAULT_TARGET_FAR,
    source: str = "",
) -> Calibration:
    """Threshold at ``target_far`` and a class-balanced logistic P(same | distance) from labelled pairs
    of embeddings made by ``embedder`` at ``version``."""
    from sklearn.linear_model import LogisticRegression

    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    point = threshold_at_far(d, s, target_far)
    model = LogisticRegression(class_weight="balanced", C=1e6).fit(d[:, None], s)
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    # sklearn models P(same) = 1 / (1 + exp(-(a d + b))): slope = -a, midpoint = -b / a.
    return Calibration(
        embedder=embedder,
        version=version,
        threshold=point.threshold,
        slope=-a,
        midpoint=-b / a,
        far=point.far,
        tar=point.tar,
        source=source or f"{s.sum()} same / {(~s).sum()} different pairs",
    )
