"""The subject-face strategies on boxes whose answers are worked out in the comments; on real photos
through the analyzer (test_analyzer), the detector's ``select`` (test_mtcnn) and evaluation
(test_eval_units)."""

from __future__ import annotations

import numpy as np
import pytest

from faceprint import subject
from faceprint.errors import ManyFacesError, NoFaceError
from faceprint.types import Detection

SHAPE = (300, 400, 3)  # h, w: the centre is (200, 150)
LM = np.zeros((5, 2), np.float32)


def det(x1: float, y1: float, x2: float, y2: float) -> Detection:
    return Detection((x1, y1, x2, y2), 0.9, LM)


BIG_CORNER = det(0, 0, 100, 100)  # area 10000, centre (50, 50): offset^2 = 150^2 + 100^2 = 32500
SMALL_CENTRE = det(180, 130, 220, 170)  # area 1600, centre (200, 150): offset 0
MID_NEAR = det(150, 100, 230, 180)  # area 6400, centre (190, 140): offset^2 = 200


def test_each_strategy_picks_its_face() -> None:
    faces = [BIG_CORNER, SMALL_CENTRE, MID_NEAR]
    assert subject.pick(faces, "largest", SHAPE) is BIG_CORNER
    assert subject.pick(faces, "central", SHAPE) is SMALL_CENTRE
    # largest-central: 10000 - 2 * 32500 < 0; 1600 - 0 = 1600; 6400 - 2 * 200 = 6000 -> MID_NEAR
    assert subject.pick(faces, "largest-central", SHAPE) is MID_NEAR
    assert subject.pick([], "largest", SHAPE) is None
    with pytest.raises(ValueError, match="unknown subject strategy 'biggest'"):
        subject.pick(faces, "biggest", SHAPE)  # type: ignore[arg-type]


def test_ties_go_to_the_first_face() -> None:
    twin = det(300, 200, 400, 300)  # as large as BIG_CORNER, as far from the centre
    assert subject.largest([BIG_CORNER, twin]) is BIG_CORNER
    assert subject.largest([twin, BIG_CORNER]) is twin
    assert subject.most_central([twin, BIG_CORNER], SHAPE) is twin


def test_rivals_are_faces_comparable_in_area() -> None:
    faces = [BIG_CORNER, SMALL_CENTRE, MID_NEAR]
    assert subject.rivals(faces, 0.5) == [BIG_CORNER, MID_NEAR]  # 6400 >= 5000 > 1600
    assert subject.rivals(faces, 0.7) == [BIG_CORNER]


def test_portrait_subject_refuses_two_comparable_faces() -> None:
    # MID_NEAR's side (80) is at least half BIG_CORNER's (100): ambiguous.
    with pytest.raises(ManyFacesError, match=r"photo\.jpg: 2 faces of similar size"):
        subject.portrait_subject([MID_NEAR, BIG_CORNER], "photo.jpg")
    # SMALL_CENTRE's side (40) is under half of 100: background, the big face is the subject.
    assert subject.portrait_subject([SMALL_CENTRE, BIG_CORNER]) is BIG_CORNER
    assert subject.portrait_subject([SMALL_CENTRE]) is SMALL_CENTRE
    with pytest.raises(NoFaceError, match="no face found"):
        subject.portrait_subject([])
