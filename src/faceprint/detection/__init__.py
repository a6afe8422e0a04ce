"""Face detection: the ``Detector`` protocol; implementations live one per module."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from faceprint.types import Detection


class Detector(Protocol):
    name: str
    version: str  # changes whenever the same name and settings would give different detections

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces in one RGB uint8 HxWx3 image, highest score first."""
        ...

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]: ...


# Detectors look for faces on a copy of the image of at most this many pixels (a 4K UHD frame): a bigger
# photo is area-downscaled first and the boxes mapped back, so time and memory stay bounded whatever the
# photo's size. The price: in such a photo the smallest face found is min_face_size pixels of the copy,
# i.e. min_face_size x (photo side / copy side) of the photo.
MAX_WORKING_PIXELS = 3840 * 2160


def working_copy(image: np.ndarray, max_pixels: int = MAX_WORKING_PIXELS) -> tuple[np.ndarray, float, float]:
    """``image`` itself when it has at most ``max_pixels`` pixels, else an area-averaged copy that has;
    with the factors (x, y) that map the copy's coordinates back to the image's."""
    import math

    import cv2

    height, width = image.shape[:2]
    if height * width <= max_pixels:
        return image, 1.0, 1.0
    scale = math.sqrt(max_pixels / (height * width))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), width / size[0], height / size[1]


def scale_detection(det: Detection, sx: float, sy: float) -> Detection:
    """A detection on a working copy, in the coordinates of the image it was made from."""
    if sx == 1.0 and sy == 1.0:
        return det
    x1, y1, x2, y2 = det.box
    marks = (np.asarray(det.landmarks, np.float32) * np.float32([sx, sy])).astype(np.float32)
    return Detection((x1 * sx, y1 * sy, x2 * sx, y2 * sy), det.score, marks)
