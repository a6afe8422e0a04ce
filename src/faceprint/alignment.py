"""Five-point face alignment: a least-squares similarity transform onto an embedder's template.

A chip is the image warped (bilinear) by the similarity (rotation, uniform scale, translation) that best
maps the detected landmarks onto the embedder's template in the least-squares sense; pixels that fall
outside the image are black, as in dlib's own chips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# A reprojection threshold no landmark can exceed: RANSAC then keeps every point as an inlier and the
# Levenberg-Marquardt refinement that follows minimises the squared error over all five points.
_ALL_INLIERS = 1e9


def similarity_transform(src_points: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
    """The 2x3 float64 similarity matrix minimising the squared distance from mapped src to dst."""
    src = np.asarray(src_points, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst_points, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(dst) or len(src) < 2:
        raise ValueError(f"need matching point sets of at least 2 points, got {len(src)} and {len(dst)}")
    matrix, _ = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=_ALL_INLIERS, maxIters=1, refineIters=50
    )
    if matrix is None:
        raise ValueError("landmarks are degenerate (all points coincide); no similarity transform exists")
    return matrix


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def align_face(image: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """The (size, size, 3) chip of ``image`` whose landmarks land on ``template`` (chip pixels)."""
    matrix = similarity_transform(landmarks, template)
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def align_faces(
    image: np.ndarray, landmarks: Sequence[np.ndarray], template: np.ndarray, size: int
) -> np.ndarray:
    """(N, size, size, 3) chips of several faces in one image, ready for an embedder's batch."""
    chips = np.empty((len(landmarks), size, size, *image.shape[2:]), dtype=image.dtype)
    for i, points in enumerate(landmarks):
        chips[i] = align_face(image, points, template, size)
    return chips


@dataclass(frozen=True)
class TemplateAlign:
    """A chip whose five landmarks land on ``template`` (a similarity warp; dlib's way)."""

    size: int
    template: np.ndarray  # (5, 2) chip pixels

    def matrix(self, box: Sequence[float], landmarks: np.ndarray) -> np.ndarray:
        return similarity_transform(landmarks, self.template)


@dataclass(frozen=True)
class MarginCrop:
    """The detector's box grown by ``margin`` (a fraction of its width/height) on every side, resized to
    a square chip (FaceNet's own pipeline: MTCNN box plus a margin, no rotation); black outside the image."""

    size: int
    margin: float

    def matrix(self, box: Sequence[float], landmarks: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        x1, y1, w, h = (
            x1 - self.margin * w,
            y1 - self.margin * h,
            w * (1 + 2 * self.margin),
            h * (1 + 2 * self.margin),
        )
        sx, sy = self.size / w, self.size / h
        return np.array([[sx, 0.0, -sx * x1], [0.0, sy, -sy * y1]])


@dataclass(frozen=True)
class BoxCrop:
    """The square around the detector box's centre (side: the box's longer side) resized to ``size``,
    no landmarks used: "alignment off" in evaluations, for any embedder's chip sizes."""

    size: int

    def matrix(self, box: Sequence[float], landmarks: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        scale = self.size / max(x2 - x1, y2 - y1, 1.0)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        return np.array([[scale, 0.0, self.size / 2 - scale * cx], [0.0, scale, self.size / 2 - scale * cy]])


ChipSpec = TemplateAlign | MarginCrop | BoxCrop


def chip_specs(embedder) -> tuple[ChipSpec, ...]:
    """How an embedder's chips are cut: its ``chip_specs()`` when it has one (a margin crop, or several
    chips per face for an embedder that combines networks), else a 5-point alignment to its ``template()``
    at its ``input_size``."""
    own = getattr(embedder, "chip_specs", None)
    if own is not None:
        return tuple(own())
    return (TemplateAlign(embedder.input_size, embedder.template()),)


def cut_chips(
    image: np.ndarray, faces: Sequence[tuple[Sequence[float], np.ndarray]], specs: Sequence[ChipSpec]
) -> np.ndarray:
    """(N, H, W, 3) chips of ``faces`` ((box, landmarks) pairs). One spec gives plain (N, S, S, 3) chips;
    several put each face's chips side by side, left to right in spec order, top-aligned and padded
    black to the tallest (the embedder that asked for them splits them again by the specs' sizes)."""
    height = max(s.size for s in specs)
    width = sum(s.size for s in specs)
    chips = np.zeros((len(faces), height, width, *image.shape[2:]), dtype=image.dtype)
    for chip, (box, landmarks) in zip(chips, faces, strict=True):
        left = 0
        for spec in specs:
            chip[: spec.size, left : left + spec.size] = cv2.warpAffine(
                image,
                spec.matrix(box, landmarks),
                (spec.size, spec.size),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
            left += spec.size
    return chips


def split_chips(chips: np.ndarray, specs: Sequence[ChipSpec]) -> list[np.ndarray]:
    """The per-spec chips of side-by-side chips made by :func:`cut_chips`."""
    out, left = [], 0
    for spec in specs:
        out.append(chips[:, : spec.size, left : left + spec.size])
        left += spec.size
    return out
