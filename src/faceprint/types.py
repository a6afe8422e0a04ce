"""Result types shared by every stage. Frozen dataclasses, never bare tuples or dicts.

Conventions: boxes are ``(x1, y1, x2, y2)`` floats in pixels of the input image; landmarks are a
``(5, 2)`` float32 array of ``(x, y)`` in this order: left eye, right eye, nose, left mouth corner,
right mouth corner — "left" meaning the image's left (the subject's right eye), as MTCNN emits them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The name of every face that matches nobody: never a person's name.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class EmbedderKey:
    """Which embedder produced a vector (name and version); vectors of different keys are never
    compared, and thresholds and calibrations are looked up by it."""

    name: str
    version: str

    @classmethod
    def of(cls, embedder: Any) -> EmbedderKey:
        """The key of an embedder instance (anything with ``name`` and ``version``)."""
        return cls(embedder.name, embedder.version)

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = field(repr=False)  # (5, 2) float32

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = field(repr=False)  # (5, 2) float32
    embedding: np.ndarray | None = field(default=None, repr=False)  # (D,) float32, L2-normalised
    chip: np.ndarray | None = field(default=None, repr=False)  # aligned RGB uint8 chip, on request

    @property
    def detection(self) -> Detection:
        return Detection(self.box, self.score, self.landmarks)
