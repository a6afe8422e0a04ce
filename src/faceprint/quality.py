"""How good a face is for recognition: size, sharpness and pose from the pixels and the 5 landmarks.

The one home of the face-quality measures: enrolment's quality flags, data preparation's filters, the
video pipeline's "worth embedding again" score and the evaluation's yaw slices all measure here, so a
threshold means the same thing wherever it is used. Sharpness in particular is on one scale: the
variance of the Laplacian of the grey face resampled to :data:`SHARPNESS_SIDE` pixels square (an
aligned dlib chip as it is; a detection box's crop resampled to it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceprint.types import Detection

LEFT_EYE, RIGHT_EYE, NOSE, LEFT_MOUTH, RIGHT_MOUTH = range(5)

# The side sharpness is measured at: dlib-resnet's chip, so enrolment's threshold reads its chips as
# they are.
SHARPNESS_SIDE = 150
# Enrolment and data preparation: a face narrower than this (pixels) is upscaled into the embedder's chip
# and loses detail.
MIN_FACE_SIZE = 40.0
# Sharpness below which a face is blurred (how it was chosen: docs/gallery.md, "Enrolment policy").
MIN_SHARPNESS = 20.0
# The video score: a face this many pixels across (or more) is as good as size gets for a 150 px chip,
# and a box crop this sharp counts as fully sharp (a box crop holds less hair and background than a chip,
# so it reads lower; chosen to keep the score the video pipeline had: bench/fit_video_sharpness.py).
FULL_SIZE = 80.0
FULL_SHARPNESS = 10.0


def face_size(box: tuple[float, float, float, float]) -> float:
    """The shorter side of a box, pixels."""
    x1, y1, x2, y2 = box
    return float(min(x2 - x1, y2 - y1))


def sharpness(face: np.ndarray) -> float:
    """Variance of the Laplacian of an RGB face image (a chip or a box crop) resampled to
    :data:`SHARPNESS_SIDE` square; higher is sharper."""
    grey = cv2.cvtColor(np.ascontiguousarray(face), cv2.COLOR_RGB2GRAY)
    if grey.shape != (SHARPNESS_SIDE, SHARPNESS_SIDE):
        shrink = min(grey.shape) > SHARPNESS_SIDE
        grey = cv2.resize(
            grey,
            (SHARPNESS_SIDE, SHARPNESS_SIDE),
            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
        )
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def box_crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """The pixels of ``box`` inside the image, or None when fewer than 4x4 of them are."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    xa, ya = max(0, int(x1)), max(0, int(y1))
    xb, yb = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
    if xb - xa < 4 or yb - ya < 4:
        return None
    return image[ya:yb, xa:xb]


def quality_flags(box: tuple[float, float, float, float], chip: np.ndarray | None) -> tuple[str, ...]:
    """``small`` for a face under :data:`MIN_FACE_SIZE` pixels, ``blurry`` for an aligned chip under
    :data:`MIN_SHARPNESS` (not judged without a chip)."""
    flags = []
    if face_size(box) < MIN_FACE_SIZE:
        flags.append("small")
    if chip is not None and sharpness(chip) < MIN_SHARPNESS:
        flags.append("blurry")
    return tuple(flags)


def _eye_axis(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nose offset from the eyes' midpoint along the eye axis in pixels, inter-ocular distance), over
    (..., 5, 2) landmarks; projecting on the eye axis makes both independent of in-plane roll."""
    lm = np.asarray(landmarks, dtype=np.float64)
    left, right, nose = lm[..., LEFT_EYE, :], lm[..., RIGHT_EYE, :], lm[..., NOSE, :]
    axis = right - left
    iod = np.maximum(np.linalg.norm(axis, axis=-1), 1e-6)
    return np.sum((nose - (left + right) / 2) * axis, axis=-1) / iod, iod


def yaw_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Signed yaw as the nose's offset along the eye axis over the eye distance, (..., 5, 2) -> (...):
    0 frontal, about +-0.5 in profile (the sign tells which way the head turns)."""
    offset, iod = _eye_axis(landmarks)
    return offset / iod


def yaw_degrees(landmarks: np.ndarray) -> np.ndarray:
    """Approximate |yaw| in degrees, (..., 5, 2) -> (...): the nose offset relative to half the
    inter-ocular distance is tan(yaw) for a head whose nose protrudes about as far as half the eye
    spacing (a typical adult proportion)."""
    offset, iod = _eye_axis(landmarks)
    return np.degrees(np.arctan(np.abs(offset) / (iod / 2)))


def pitch_ratio(landmarks: np.ndarray) -> float:
    """The nose's height between the eye line and the mouth line: about 0.5 level, lower looks up."""
    lm = np.asarray(landmarks, np.float64)
    eye_mid, mouth_mid = (lm[LEFT_EYE] + lm[RIGHT_EYE]) / 2, (lm[LEFT_MOUTH] + lm[RIGHT_MOUTH]) / 2
    face_height = max(float(mouth_mid[1] - eye_mid[1]), 1e-6)
    return float((lm[NOSE][1] - eye_mid[1]) / face_height)


@dataclass(frozen=True)
class FaceQuality:
    size: float  # shorter box side, pixels
    sharpness: float  # :func:`sharpness` of the box crop
    yaw: float  # :func:`yaw_ratio`
    pitch: float  # :func:`pitch_ratio`
    score: float  # overall, in [0, 1]: size term x sharpness term x frontal term


def face_quality(image: np.ndarray, detection: Detection) -> FaceQuality:
    """Quality of one detected face in an RGB frame, before any chip is cut (video: is this face worth
    embedding, which frames to enrol)."""
    size = face_size(detection.box)
    crop = box_crop(image, detection.box)
    sharp = sharpness(crop) if crop is not None else 0.0
    yaw = float(yaw_ratio(detection.landmarks))
    pitch = pitch_ratio(detection.landmarks)
    frontal = max(0.0, 1.0 - 2.0 * abs(yaw)) * max(0.0, 1.0 - 2.0 * abs(pitch - 0.55))
    score = min(1.0, size / FULL_SIZE) * min(1.0, sharp / FULL_SHARPNESS) * frontal
    return FaceQuality(size, sharp, yaw, pitch, score)
