"""MTCNN's phantom filter: a second look at each final box, which drops background objects the cascade
takes for faces (a dark suit at score 0.95, hair, a ring, a tie).

The cascade scores a face once, on the crop R-Net proposed; O-Net's regressed box is never looked at
again. The second look runs O-Net on the final box (squared) and on that square shifted by a tenth of its
side left, right, up and down: five crops, one batched forward for all faces. Two things tell a phantom:

- ``looks``: the mean P(face) of the five crops. A real face stays a face when the window moves a little;
  texture that happened to excite O-Net at one position mostly does not;
- ``follow``: how far O-Net's five landmarks move *with the window*, as a fraction of the shift (least
  squares over the four shifts, in units of the box side). On a face the landmarks stay on the eyes, nose
  and mouth whatever the window (follow ~0); on a phantom O-Net draws its average face inside whatever
  window it is shown, so the "eyes" slide along with it (follow ~1).

A box is a phantom when ``looks < LOOKS_MIN`` or when ``looks < LOOKS_DOUBT`` and ``follow > FOLLOW_MAX``.
The thresholds were chosen on labelled detections (docs/detection.md: the stills, 1,018 LFW images'
background detections, the crowd video; ``bench/bench_phantoms.py`` prints false faces and faces lost with
the filter off and on). The score alone does not separate them: phantoms reach 0.988, real background faces
go down to 0.71.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SHIFT = 0.1  # of the square's side: the four shifted windows of the second look
LOOKS_MIN = 0.6  # mean P(face) of the five windows under which a box is a phantom
LOOKS_DOUBT = 0.8  # ... and under which it is one if its landmarks follow the window
FOLLOW_MAX = 0.45  # landmarks moving with the window by more than this fraction of the shift

_OFFSETS = np.array([[0.0, 0.0], [-SHIFT, 0.0], [SHIFT, 0.0], [0.0, -SHIFT], [0.0, SHIFT]])

# (boxes (n, 4) float, 48) -> (P(face) (n,), landmarks (n, 10): five x then five y as fractions of the box)
ONetLook = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def windows(boxes: np.ndarray) -> np.ndarray:
    """(n, 5, 4): each box's square, then the square shifted by SHIFT of its side (-x, +x, -y, +y)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    centres = np.stack([cx, cy], axis=1)[:, None, :] + _OFFSETS[None] * side[:, None, None]
    half = (side / 2)[:, None, None]
    return np.concatenate([centres - half, centres + half], axis=2)


def second_look(boxes: np.ndarray, onet: ONetLook) -> tuple[np.ndarray, np.ndarray]:
    """(looks, follow) of each final box (n, 4): see the module's docstring."""
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0), np.zeros(0)
    wins = windows(boxes)  # (n, 5, 4)
    flat = wins.reshape(-1, 4)
    prob, marks = onet(flat)
    # Landmarks in image coordinates, placed as the cascade places O-Net's (box sizes counted inclusively).
    bw = (flat[:, 2] - flat[:, 0] + 1)[:, None]
    bh = (flat[:, 3] - flat[:, 1] + 1)[:, None]
    xs = marks[:, :5] * bw + flat[:, :1] - 1
    ys = marks[:, 5:] * bh + flat[:, 1:2] - 1
    points = np.stack([xs, ys], axis=2).reshape(n, 5, 5, 2)  # (box, window, landmark, xy)
    side = (wins[:, 0, 2] - wins[:, 0, 0])[:, None, None]
    moved = (points[:, 1:] - points[:, :1]).mean(axis=2) / side  # (n, 4, 2) mean landmark shift
    shifts = _OFFSETS[1:]
    follow = (moved * shifts[None]).sum(axis=(1, 2)) / float((shifts * shifts).sum())
    looks = prob.reshape(n, 5).mean(axis=1)
    return looks, follow


def phantoms(looks: np.ndarray, follow: np.ndarray) -> np.ndarray:
    """Which boxes are phantoms, from :func:`second_look`'s measures."""
    return (looks < LOOKS_MIN) | ((looks < LOOKS_DOUBT) & (follow > FOLLOW_MAX))
