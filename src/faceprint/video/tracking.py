"""Multi-face tracking by detection: a constant-velocity Kalman filter per face (OpenCV) and optimal IoU
assignment of detections to predicted boxes (SciPy's Hungarian solver), SORT-style.

Between detection frames the tracker only predicts, so detection can run every N frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from faceprint.types import Detection

Box = tuple[float, float, float, float]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection-over-union of boxes (N, 4) and (M, 4) as (x1, y1, x2, y2)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _kalman(box: Box) -> cv2.KalmanFilter:
    # State: centre x, centre y, width, height and their velocities per frame; we observe the box.
    kf = cv2.KalmanFilter(8, 4)
    kf.transitionMatrix = np.eye(8, dtype=np.float32)
    for i in range(4):
        kf.transitionMatrix[i, i + 4] = 1.0
    kf.measurementMatrix = np.eye(4, 8, dtype=np.float32)
    side = max(box[2] - box[0], box[3] - box[1], 1.0)
    # Noise scales with the face size: a big (near) face moves more pixels per frame than a small one.
    kf.processNoiseCov = np.diag([side * 0.05] * 4 + [side * 0.02] * 4).astype(np.float32) ** 2
    kf.measurementNoiseCov = np.diag([side * 0.05] * 4).astype(np.float32) ** 2
    kf.errorCovPost = np.diag([side * 0.1] * 4 + [side * 0.5] * 4).astype(np.float32) ** 2
    kf.statePost = np.array([*_measure(box), 0, 0, 0, 0], np.float32).reshape(8, 1)
    return kf


def _measure(box: Box) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], np.float32)


def _box(state: np.ndarray) -> Box:
    cx, cy, w, h = (float(v) for v in state[:4, 0])
    w, h = max(w, 1.0), max(h, 1.0)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


@dataclass(eq=False)
class Track:
    """A face followed across frames. Mutable tracker state; read its fields, do not set them."""

    track_id: int
    box: Box
    detection: Detection | None  # the detection matched on the latest frame, None when only predicted
    first_frame: int
    last_frame: int
    kalman: cv2.KalmanFilter = field(repr=False)
    hits: int = 1
    misses: int = 0  # consecutive detection rounds without a match


@dataclass(frozen=True)
class TrackerStep:
    """What one frame changed: tracks started and ended on it; ``active`` lists every live track."""

    active: tuple[Track, ...]
    started: tuple[Track, ...]
    ended: tuple[Track, ...]


class Tracker:
    """Associates detections across frames and gives each face a stable track id.

    ``max_misses``: detection rounds a track survives unmatched (it keeps being predicted meanwhile).
    ``min_iou``: the least overlap between a predicted box and a detection to call them the same face.
    """

    def __init__(self, *, min_iou: float = 0.25, max_misses: int = 3) -> None:
        self.min_iou = min_iou
        self.max_misses = max_misses
        self._tracks: list[Track] = []
        self._next_id = 1
        self._frame = -1

    @property
    def tracks(self) -> tuple[Track, ...]:
        return tuple(self._tracks)

    def step(self, detections: Sequence[Detection] | None) -> TrackerStep:
        """Advance one frame. ``detections`` of this frame, or None on frames where detection did not run."""
        self._frame += 1
        for track in self._tracks:
            track.box = _box(track.kalman.predict())
            track.detection = None
        if detections is None:
            return TrackerStep(tuple(self._tracks), (), ())
        predicted = np.array([t.box for t in self._tracks], np.float64).reshape(-1, 4)
        boxes = np.array([d.box for d in detections], np.float64).reshape(-1, 4)
        overlap = iou_matrix(predicted, boxes)
        rows, cols = linear_sum_assignment(-overlap) if overlap.size else ((), ())
        matched_tracks, matched_dets = set(), set()
        for r, c in zip(rows, cols, strict=True):
            if overlap[r, c] < self.min_iou:
                continue
            track, det = self._tracks[r], detections[c]
            track.box = _box(track.kalman.correct(_measure(det.box).reshape(4, 1)))
            track.detection = det
            track.hits += 1
            track.misses = 0
            track.last_frame = self._frame
            matched_tracks.add(r)
            matched_dets.add(c)
        ended = []
        for r, track in enumerate(self._tracks):
            if r not in matched_tracks:
                track.misses += 1
                if track.misses > self.max_misses:
                    ended.append(track)
        started = [self._start(det) for c, det in enumerate(detections) if c not in matched_dets]
        self._tracks = [t for t in self._tracks if t not in ended] + started
        return TrackerStep(tuple(self._tracks), tuple(started), tuple(ended))

    def restart(self, track: Track) -> Track:
        """End ``track`` and start a new one on its current detection: a different face took its place."""
        assert track.detection is not None
        new = self._start(track.detection)
        self._tracks[self._tracks.index(track)] = new
        return new

    def end_all(self) -> tuple[Track, ...]:
        """End every track (end of the video, or a scene cut); returns them."""
        ended, self._tracks = tuple(self._tracks), []
        return ended

    def _start(self, det: Detection) -> Track:
        track = Track(self._next_id, det.box, det, self._frame, self._frame, _kalman(det.box))
        self._next_id += 1
        return track
