"""Decision thresholds and calibrated confidence: one table, keyed by embedder name + version.

A :class:`Calibration` holds the distance threshold (accept "same person" when ``distance <= threshold``)
and a logistic model of P(same person | distance), fitted on labelled pairs with equal weight on
same-person and different-person pairs (so the confidence reads as P(same) at even prior odds). The
fitting lives with evaluation (``faceprint.evaluation.calibration``); this module only holds the
built-in table and the lookup, so that every decision (``compare``, ``verify``, ``identify``, video)
reads the same numbers.

Which threshold applies, highest priority first: the caller's ``threshold=``, the gallery's own setting
(``Gallery.set_threshold``), a calibration stored in the gallery (``faceprint calibrate --save``), the
built-in calibration below, and finally the embedder's ``threshold`` attribute (a trained model file
carries its own).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from faceprint.errors import GalleryError
from faceprint.types import EmbedderKey

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
    version: str = ""  # the embedder version it was fitted on ("" in calibrations saved before versions)

    @property
    def key(self) -> EmbedderKey:
        return EmbedderKey(self.embedder, self.version)

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


# The built-in table. Every entry is reproduced by `python bench/calibrate_thresholds.py --emb flip=...`
# (the default pipeline on all of LFW deep-funneled); its figures are in docs/gallery.md.
_DLIB_FLIP = EmbedderKey("dlib-resnet", "2+flip")  # the default: each face averaged with its mirror
_DLIB_ONE_VIEW = EmbedderKey("dlib-resnet", "2")
BUILTIN: dict[EmbedderKey, Calibration] = {
    _DLIB_FLIP: Calibration(
        embedder=_DLIB_FLIP.name,
        version=_DLIB_FLIP.version,
        threshold=0.3771,
        slope=66.49,
        midpoint=0.4223,
        far=0.0010,
        tar=0.9483,
        source="LFW deep-funneled, flip TTA: 33,078 same-person / 2,000,000 different-person pairs",
    ),
    _DLIB_ONE_VIEW: Calibration(
        embedder=_DLIB_ONE_VIEW.name,
        version=_DLIB_ONE_VIEW.version,
        threshold=0.3848,
        slope=67.59,
        midpoint=0.4334,
        far=0.0010,
        tar=0.9337,
        source="LFW deep-funneled, one view: 33,078 same-person / 2,000,000 different-person pairs",
    ),
}


def builtin_calibration(key: EmbedderKey) -> Calibration | None:
    """The built-in calibration of one embedder version, else None. Jittered views ("+jitterN") use the
    calibration of the same version without jitter: their FAR 1e-3 distance on the LFW pairs is close
    to it (bench/bench_tta_lfw.py prints the gap)."""
    for version in (key.version, re.sub(r"\+jitter\d+", "", key.version)):
        found = BUILTIN.get(EmbedderKey(key.name, version))
        if found is not None:
            return found
    return None


def fallback_calibration(key: EmbedderKey, threshold: float) -> Calibration:
    """For an embedder without any calibration: centre the confidence on its own threshold, borrowing
    the steepness of the default dlib-resnet calibration. Marked in ``source``: run ``faceprint
    calibrate``."""
    return Calibration(
        embedder=key.name,
        version=key.version,
        threshold=threshold,
        slope=BUILTIN[_DLIB_FLIP].slope,
        midpoint=threshold,
        far=math.nan,
        tar=math.nan,
        source="uncalibrated: centred on the embedder's own threshold",
    )


def calibration_for(key: EmbedderKey, embedder_threshold: float | None = None) -> Calibration:
    """The built-in calibration of ``key``, else a fallback centred on the embedder's own threshold;
    GalleryError when there is neither."""
    found = builtin_calibration(key)
    if found is not None:
        return found
    if embedder_threshold is None:
        raise GalleryError(f"no calibrated threshold for embedder {key}; pass one")
    return fallback_calibration(key, embedder_threshold)


def embedder_calibration(embedder: Any) -> Calibration:
    """The calibration of an embedder instance, without any gallery setting: what ``compare`` uses."""
    return calibration_for(EmbedderKey.of(embedder), getattr(embedder, "threshold", None))
