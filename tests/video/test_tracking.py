"""Tracker logic on synthetic boxes: ids persist, crossing faces keep their ids, tracks end after misses."""

from __future__ import annotations

import numpy as np

from faceprint.types import Detection
from faceprint.video.tracking import Tracker, iou_matrix

LANDMARKS = np.zeros((5, 2), np.float32)


def det(cx: float, cy: float, side: float = 60.0) -> Detection:
    return Detection((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), 0.99, LANDMARKS)


def test_iou_matrix_known_values():
    a = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], float)
    b = np.array([[5, 0, 15, 10]], float)
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 1)
    assert np.isclose(iou[0, 0], 50 / 150) and iou[1, 0] == 0


def test_ids_persist_while_a_face_moves_and_detection_runs_every_third_frame():
    tracker = Tracker(max_misses=2)
    ids = set()
    for f in range(60):
        detections = [det(100 + 3 * f, 200)] if f % 3 == 0 else None
        step = tracker.step(detections)
        assert len(step.active) == 1
        ids.add(step.active[0].track_id)
        # Between detections the Kalman prediction follows the motion: within a few pixels of the truth.
        if f > 10:
            x1, _, x2, _ = step.active[0].box
            assert abs((x1 + x2) / 2 - (100 + 3 * f)) < 6
    assert ids == {1}


def test_two_faces_crossing_slowly_keep_their_ids():
    tracker = Tracker(max_misses=2)
    seen: dict[int, list[float]] = {}
    for f in range(80):
        # Face A walks right, face B walks left, slightly lower: they overlap heavily mid-way.
        step = tracker.step([det(100 + 4 * f, 200), det(420 - 4 * f, 215)])
        for track in step.active:
            seen.setdefault(track.track_id, []).append((track.box[0] + track.box[2]) / 2)
        assert not step.ended
    assert sorted(seen) == [1, 2]
    a, b = seen[1], seen[2]
    assert a[-1] > a[0] + 250 and b[-1] < b[0] - 250  # each id stayed with its own face through the crossing


def test_track_ends_after_max_misses_and_a_new_face_gets_a_new_id():
    tracker = Tracker(max_misses=3)
    first = tracker.step([det(100, 100)]).started[0]
    for _ in range(3):
        step = tracker.step([])
        assert step.active == (first,) and not step.ended  # missed, still predicted
    step = tracker.step([])
    assert step.ended == (first,) and not step.active
    again = tracker.step([det(100, 100)])
    assert again.started[0].track_id == first.track_id + 1


def test_far_away_detection_starts_a_second_track_not_a_jump():
    tracker = Tracker()
    tracker.step([det(100, 100)])
    step = tracker.step([det(500, 300)])
    assert [t.track_id for t in step.started] == [2]
    assert len(step.active) == 2


def test_restart_replaces_a_track_with_a_new_id_at_the_same_place():
    tracker = Tracker()
    tracker.step([det(100, 100)])
    step = tracker.step([det(102, 100)])
    old = step.active[0]
    new = tracker.restart(old)
    assert new.track_id != old.track_id and tracker.tracks == (new,)
    assert new.box == old.detection.box
