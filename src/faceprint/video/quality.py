"""How good a detected face is for recognition: size, sharpness and frontal pose, from the frame and the
5 landmarks. Used to decide when a track's face is worth embedding again and to pick enrolment frames."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceprint.types import Detection

# A face this many pixels across (or more) is as good as size gets for a 150 px embedder chip.
FULL_SIZE = 80.0
# Variance of the Laplacian of a 64x64 grey face crop at which it counts as fully sharp.
FULL_SHARPNESS = 150.0


@dataclass(frozen=True)
class FaceQuality:
    size: float  # shorter box side, pixels
    sharpness: float  # variance of the Laplacian of the face resampled to 64x64
    yaw: float  # nose offset from the eye midpoint over the eye distance: 0 frontal, ~±0.5 profile
    pitch: float  # nose height between eye line and mouth line: ~0.5 level, lower looks up
    score: float  # overall, in [0, 1]: size term x sharpness term x frontal term


def face_quality(image: np.ndarray, detection: Detection) -> FaceQuality:
    """Quality of one detected face in an RGB frame."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = detection.box
    size = float(min(x2 - x1, y2 - y1))
    xa, ya = max(0, int(x1)), max(0, int(y1))
    xb, yb = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
    sharpness = 0.0
    if xb - xa >= 4 and yb - ya >= 4:
        grey = cv2.cvtColor(image[ya:yb, xa:xb], cv2.COLOR_RGB2GRAY)
        sharpness = float(cv2.Laplacian(cv2.resize(grey, (64, 64)), cv2.CV_32F).var())
    lm = np.asarray(detection.landmarks, np.float64)
    eye_mid, mouth_mid, nose = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2, lm[2]
    eye_dist = max(float(np.linalg.norm(lm[1] - lm[0])), 1e-6)
    yaw = float((nose[0] - eye_mid[0]) / eye_dist)
    face_height = max(float(mouth_mid[1] - eye_mid[1]), 1e-6)
    pitch = float((nose[1] - eye_mid[1]) / face_height)
    frontal = max(0.0, 1.0 - 2.0 * abs(yaw)) * max(0.0, 1.0 - 2.0 * abs(pitch - 0.55))
    score = min(1.0, size / FULL_SIZE) * min(1.0, sharpness / FULL_SHARPNESS) * frontal
    return FaceQuality(size, sharpness, yaw, pitch, score)
