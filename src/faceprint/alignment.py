"""Five-point face alignment: a least-squares similarity transform onto an embedder's template.

A chip is the image warped (bilinear) by the similarity (rotation, uniform scale, translation) that best
maps the detected landmarks onto the embedder's template in the least-squares sense; pixels that fall
outside the image are black, as in dlib's own chips.
"""

from __future__ import annotations

from collections.abc import Sequence

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
