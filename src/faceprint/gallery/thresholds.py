"""Decision thresholds and calibrated confidence, per embedder.

A :class:`Calibration` holds the distance threshold (accept "same person" when ``distance <= threshold``)
and a logistic model of P(same person | distance), fitted on labelled pairs with equal weight on
same-person and different-person pairs (so the confidence reads as P(same) at even prior odds).
The ROC/threshold arithmetic comes from ``faceprint.evaluation.metrics`` (shared with the evaluation
reports); the logistic fit from scikit-learn.

Which threshold applies, highest priority first: the caller's ``threshold=``, the gallery's own setting
(``Gallery.set_threshold``), a calibration stored in the gallery (``faceprint calibrate --save``), the
built-in calibration below, and finally the embedder's ``threshold`` attribute.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass

import numpy as np

from faceprint.errors import GalleryError

# Default target for the built-in thresholds: a stranger is compared with every person in a gallery, so
# the per-pair false-accept rate must be small for "unknown" to mean something (users' first complaint).
DEFAULT_TARGET_FAR = 1e-3


@dataclass(frozen=True)
class Calibration:
    """Threshold and P(same | distance) = 1 / (1 + exp(slope * (distance - midpoint)))."""

    embedder: str
    threshold: float
    slope: float
    midpoint: float  # distance where the confidence is 0.5
    far: float  # false-accept rate at ``threshold`` on the calibration pairs
    tar: float  # true-accept rate at ``threshold`` on the calibration pairs
    source: str  # what data produced it

    def confidence(self, distance: float | np.ndarray) -> float | np.ndarray:
        """Calibrated P(same person) in [0, 1]; infinite distance (empty gallery) gives 0."""
        d = np.asarray(distance, dtype=np.float64)
        with np.errstate(over="ignore"):
            p = 1.0 / (1.0 + np.exp(self.slope * (d - self.midpoint)))
        return float(p) if p.ndim == 0 else p

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as err:
            raise GalleryError(f"unreadable stored calibration ({err})") from err


# Built-in calibrations. Each number comes from bench/calibrate_thresholds.py (rerun it to reproduce) on LFW
# deep-funneled with the default pipeline (MTCNN -> 5-point alignment -> embedder); see the comment per entry.
BUILTIN: dict[str, Calibration] = {
    # `python bench/calibrate_thresholds.py --emb flip=true` (the default pipeline on all of LFW
    # deep-funneled, 2026-11-28: 13,233 of 13,233 images with a face): 33,078 same-person pairs (at most 300
    # per person) and 2,000,000 sampled different-person pairs. At the threshold: FAR 0.100%, TAR 94.8%.
    # For reference: FAR 1% at 0.423 (TAR 99.1%), FAR 0.01% at 0.336 (TAR 80.9%), EER 0.96% at 0.422
    # (dlib's own 0.6 on raw descriptors of norm ~1.4). Confidence 0.95 at the threshold, 0.5 at 0.4223.
    "dlib-resnet": Calibration(
        embedder="dlib-resnet",
        threshold=0.3771,
        slope=66.49,
        midpoint=0.4223,
        far=0.0010,
        tar=0.9483,
        source="LFW deep-funneled, flip TTA: 33,078 same-person / 2,000,000 different-person pairs",
    ),
    # The same with one view per face (`--emb flip=false`): FAR 0.100%, TAR 93.4%; FAR 1% at 0.431 (TAR
    # 98.7%), FAR 0.01% at 0.342 (TAR 76.0%), EER 1.13% at 0.433. Confidence 0.96 at the threshold.
    "dlib-resnet@2": Calibration(
        embedder="dlib-resnet",
        threshold=0.3848,
        slope=67.59,
        midpoint=0.4334,
        far=0.0010,
        tar=0.9337,
        source="LFW deep-funneled, one view: 33,078 same-person / 2,000,000 different-person pairs",
    ),
}


def builtin_calibration(embedder: str, version: str | None = None) -> Calibration | None:
    """The built-in calibration of one embedder version ("NAME@VERSION", e.g. "dlib-resnet@2" for one view
    per face), else of the embedder's default setting (key NAME), else None. Jittered views ("+jitterN")
    use the calibration of the same version without jitter: on the LFW pairs their FAR 1e-3 distance is
    within 0.008 of it (bench/bench_tta_lfw.py)."""
    if version is not None:
        for key in (version, re.sub(r"\+jitter\d+", "", version)):
            if f"{embedder}@{key}" in BUILTIN:
                return BUILTIN[f"{embedder}@{key}"]
    return BUILTIN.get(embedder)


def fallback_calibration(embedder: str, threshold: float) -> Calibration:
    """For an embedder without any calibration: centre the confidence on its own threshold, borrowing
    the steepness of the dlib-resnet calibration. Marked in ``source``; run ``faceprint calibrate``."""
    return Calibration(
        embedder=embedder,
        threshold=threshold,
        slope=BUILTIN["dlib-resnet"].slope,
        midpoint=threshold,
        far=math.nan,
        tar=math.nan,
        source="uncalibrated: centred on the embedder's own threshold",
    )


def calibrate(
    distances: np.ndarray,
    same: np.ndarray,
    *,
    embedder: str,
    target_far: float = DEFAULT_TARGET_FAR,
    source: str = "",
) -> Calibration:
    """Threshold at ``target_far`` and a class-balanced logistic P(same | distance) from labelled pairs."""
    from sklearn.linear_model import LogisticRegression

    from faceprint.evaluation.metrics import threshold_at_far

    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    point = threshold_at_far(d, s, target_far)
    model = LogisticRegression(class_weight="balanced", C=1e6).fit(d[:, None], s)
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    # sklearn models P(same) = 1 / (1 + exp(-(a d + b))): slope = -a, midpoint = -b / a.
    return Calibration(
        embedder=embedder,
        threshold=point.threshold,
        slope=-a,
        midpoint=-b / a,
        far=point.far,
        tar=point.tar,
        source=source or f"{s.sum()} same / {(~s).sum()} different pairs",
    )
