"""Annotated copies of images: boxes, landmarks and labels (OpenCV drawing)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from faceprint.errors import FaceprintError
from faceprint.types import Detection


def draw_faces(
    image: np.ndarray,
    detections: Sequence[Detection],
    out: Path | None = None,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Draw boxes, the 5 landmarks and optional labels on a copy of an RGB image; save it if ``out``."""
    canvas = np.ascontiguousarray(image.copy())
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for i, det in enumerate(detections):
        x1, y1, x2, y2 = (round(v) for v in det.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        for x, y in det.landmarks:
            cv2.circle(canvas, (round(float(x)), round(float(y))), thickness + 1, (255, 0, 0), -1)
        text = labels[i] if labels is not None else f"{det.score:.2f}"
        scale = max(0.4, thickness * 0.4)
        cv2.putText(
            canvas, text, (x1, max(0, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0), thickness
        )
    if out is not None and not cv2.imwrite(str(out), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise FaceprintError(f"{out}: could not write the annotated image")
    return canvas
