"""Robustness slices: synthetic corruptions of one side of each pair, and yaw buckets from landmarks.

Corruptions are placed with the landmarks found on the clean image, then the corrupted image goes
through the whole pipeline again (detection included): a face the detector now misses counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from faceprint.quality import LEFT_EYE, LEFT_MOUTH, NOSE, RIGHT_EYE, RIGHT_MOUTH

YAW_BUCKETS: tuple[tuple[float, float], ...] = ((0, 15), (15, 30), (30, 45), (45, 90))
LOWRES_FACTOR = 4  # the image is shrunk 4x and enlarged back: an LFW face ends up ~25 px wide
BLUR_SIGMA = 3.0  # pixels, Gaussian


def _iod(landmarks: np.ndarray) -> float:
    return float(max(np.linalg.norm(landmarks[RIGHT_EYE] - landmarks[LEFT_EYE]), 1.0))


def occlude_eyes(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A black band over both eyes (half an inter-ocular distance beyond them, 0.6 of it tall)."""
    iod, eyes = _iod(landmarks), landmarks[[LEFT_EYE, RIGHT_EYE]]
    x1, x2 = eyes[:, 0].min() - 0.5 * iod, eyes[:, 0].max() + 0.5 * iod
    y1, y2 = eyes[:, 1].min() - 0.3 * iod, eyes[:, 1].max() + 0.3 * iod
    return _black_box(image, x1, y1, x2, y2)


def occlude_lower_face(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A black box from just below the eyes-nose midpoint to under the chin, like a face mask."""
    iod, mouth = _iod(landmarks), landmarks[[LEFT_MOUTH, RIGHT_MOUTH]]
    eye_y = landmarks[[LEFT_EYE, RIGHT_EYE], 1].mean()
    y1 = (eye_y + landmarks[NOSE, 1]) / 2 + 0.15 * iod
    y2 = mouth[:, 1].max() + 0.8 * iod
    x1, x2 = mouth[:, 0].min() - 0.6 * iod, mouth[:, 0].max() + 0.6 * iod
    return _black_box(image, x1, y1, x2, y2)


def low_resolution(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    small = cv2.resize(
        image, (max(w // LOWRES_FACTOR, 1), max(h // LOWRES_FACTOR, 1)), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blur(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), BLUR_SIGMA)


def greyscale(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _black_box(image: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    out = image.copy()
    h, w = out.shape[:2]
    xa, xb = int(np.clip(round(x1), 0, w)), int(np.clip(round(x2), 0, w))
    ya, yb = int(np.clip(round(y1), 0, h)), int(np.clip(round(y2), 0, h))
    out[ya:yb, xa:xb] = 0
    return out


Corruption = Callable[[np.ndarray, np.ndarray], np.ndarray]
CORRUPTIONS: dict[str, Corruption] = {
    "occlusion: eye band": occlude_eyes,
    "occlusion: lower face": occlude_lower_face,
    f"low resolution (1/{LOWRES_FACTOR})": low_resolution,
    f"blur (sigma {BLUR_SIGMA:g} px)": blur,
    "greyscale": greyscale,
}


def yaw_bucket_label(lo: float, hi: float) -> str:
    return f"yaw {lo:g}-{hi:g} deg"


@dataclass(frozen=True)
class SliceResult:
    """Verification on one slice: accuracy at the threshold fixed on the clean pairs (what a deployed
    system would see), and the slice's own AUC and best accuracy (how separable it still is)."""

    name: str
    pairs: int
    accuracy: float
    auc: float | None  # None when the slice lacks same or different pairs
    best_accuracy: float | None
    same_distance: float | None  # median same-person pair distance (corruptions push it up)
    no_face: int  # corrupted images in which the detector found no face

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "pairs": self.pairs,
            "accuracy_at_clean_threshold": self.accuracy,
            "auc": self.auc,
            "best_accuracy": self.best_accuracy,
            "median_same_distance": self.same_distance,
            "no_face": self.no_face,
        }
