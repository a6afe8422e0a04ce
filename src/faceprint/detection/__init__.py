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
