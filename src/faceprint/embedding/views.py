"""Test-time views of aligned face chips: a fixed set of small jitters and the mirror image, whose
descriptors an embedder averages (as dlib's ``num_jitters`` does)."""

from __future__ import annotations

import cv2
import numpy as np

# Test-time jitter: the largest rotation (degrees), shift (pixels) and scale factor of a jittered view, the
# ranges of dlib's own jitter_image (rotation +-3 deg, shift +-2% of the face, zoom by at most 4%), with the
# scale made symmetric about 1 so that the views average to the unjittered chip.
JITTER_ROTATION = 3.0
JITTER_SHIFT = 3.0
JITTER_SCALE = 1.03
MAX_JITTER = 64


def jitter_params(count: int) -> np.ndarray:
    """(count, 4) rows (rotation degrees, scale, dx, dy) of the fixed jitter set.

    Antithetic pairs of Halton points (bases 2, 3, 5, 7, scaled to [-1, 1]): view 2k and 2k+1 are
    opposite perturbations, so every even-sized set is centred on the identity, and the first ``count``
    views of a larger set are the views of the smaller one (a longer run only adds views).
    """
    from scipy.stats import qmc

    # Point 0 of the unscrambled sequence is the corner (-1, -1, -1, -1); start at point 1.
    u = 2.0 * qmc.Halton(d=4, scramble=False).random((count + 1) // 2 + 1)[1:] - 1.0
    u = np.stack([u, -u], axis=1).reshape(-1, 4)[:count]
    return np.column_stack(
        [u[:, 0] * JITTER_ROTATION, JITTER_SCALE ** u[:, 1], u[:, 2] * JITTER_SHIFT, u[:, 3] * JITTER_SHIFT]
    )


def jitter_matrices(count: int, size: int) -> np.ndarray:
    """(count, 2, 3) affine maps of the jitter set: rotation and scale about the chip centre, then a shift."""
    centre = ((size - 1) / 2, (size - 1) / 2)
    out = np.empty((count, 2, 3))
    for m, (angle, scale, dx, dy) in zip(out, jitter_params(count), strict=True):
        m[:] = cv2.getRotationMatrix2D(centre, angle, scale)
        m[:, 2] += (dx, dy)
    return out


def view_images(chips: np.ndarray, jitter: np.ndarray, flip: bool) -> np.ndarray:
    """(V, N, S, S, 3): the (N, S, S, 3) chips, then their copy under each of the ``jitter`` (J, 2, 3)
    affine maps, then (with ``flip``) all of them mirrored. A jittered copy fills the few border pixels it
    lacks (at most ~8 at a rotated corner) by reflection (BORDER_REFLECT_101), which continues the hair,
    skin or background texture there; edge replication would smear streaks and a constant fill would add
    an edge the chip does not have."""
    size = chips.shape[1]
    out = np.empty((len(jitter) + 1, *chips.shape), np.uint8)
    out[0] = chips
    for view, matrix in zip(out[1:], jitter, strict=True):
        for target, chip in zip(view, chips, strict=True):
            cv2.warpAffine(chip, matrix, (size, size), target, cv2.INTER_LINEAR, cv2.BORDER_REFLECT_101)
    return np.concatenate([out, out[:, :, :, ::-1]]) if flip else out
