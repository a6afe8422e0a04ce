"""Face quality on its one scale: pose from landmarks worked out by hand, sharpness and the flags on a
real LFW face and its blurred copy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceprint import quality
from faceprint.io import load_image
from faceprint.types import Detection

# Eyes 60 px apart (half = 30): nose on the midline -> 0 deg; 30 px towards one eye -> atan(1) = 45.
FRONTAL = np.array([[70, 100], [130, 100], [100, 130], [80, 160], [120, 160]], float)
TURNED = FRONTAL.copy()
TURNED[2, 0] += 30


def _rotate(landmarks: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return landmarks @ np.array([[c, -s], [s, c]]).T


def test_yaw_from_landmarks() -> None:
    assert quality.yaw_degrees(FRONTAL) == pytest.approx(0.0)
    assert quality.yaw_degrees(TURNED) == pytest.approx(45.0)
    assert quality.yaw_degrees(np.stack([FRONTAL, TURNED])) == pytest.approx([0.0, 45.0])
    # 30 px along a 60 px eye axis; the other way round, the other sign.
    assert quality.yaw_ratio(TURNED) == pytest.approx(0.5)
    other = FRONTAL.copy()
    other[2, 0] -= 15
    assert quality.yaw_ratio(other) == pytest.approx(-0.25)


def test_pose_does_not_move_with_in_plane_roll() -> None:
    for angle in (0.3, -0.5):
        assert quality.yaw_degrees(_rotate(TURNED, angle)) == pytest.approx(45.0)
        assert quality.yaw_ratio(_rotate(FRONTAL, angle)) == pytest.approx(0.0, abs=1e-12)


def test_pitch_from_landmarks() -> None:
    # Nose 30 px below the eye line, mouth line 60 px below it: half-way.
    assert quality.pitch_ratio(FRONTAL) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def face_and_box(lfw_dir: Path) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    # LFW's deep-funnelled 250 px images hold the face in the centre, about 110 px across.
    return load_image(lfw_dir / "Tony_Blair" / "Tony_Blair_0001.jpg"), (70.0, 70.0, 180.0, 180.0)


def test_sharpness_is_one_scale(face_and_box) -> None:
    image, box = face_and_box
    crop = quality.box_crop(image, box)
    assert crop is not None and crop.shape == (110, 110, 3)
    # A 150 px chip is read as it is: the plain variance of its grey Laplacian.
    chip = cv2.resize(crop, (150, 150), interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    assert quality.sharpness(chip) == cv2.Laplacian(grey, cv2.CV_64F).var()
    # Anything else is resampled to 150 px (grey) first.
    grey = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (150, 150), interpolation=cv2.INTER_LINEAR)
    assert quality.sharpness(crop) == cv2.Laplacian(grey, cv2.CV_64F).var()
    blurred = cv2.GaussianBlur(crop, (0, 0), 2.0)
    assert quality.sharpness(blurred) < 0.5 * quality.sharpness(crop)
    # A larger crop of the same face is shrunk with area averaging, not aliased: same order of magnitude.
    big = cv2.resize(crop, (400, 400), interpolation=cv2.INTER_CUBIC)
    assert 0.3 < quality.sharpness(big) / quality.sharpness(crop) < 3


def test_flags_and_video_score(face_and_box) -> None:
    image, box = face_and_box
    chip = cv2.resize(quality.box_crop(image, box), (150, 150))
    assert quality.quality_flags(box, chip) == ()
    assert quality.quality_flags((0.0, 0.0, 30.0, 30.0), None) == ("small",)
    soft = cv2.GaussianBlur(chip, (0, 0), 4.0)
    assert quality.quality_flags(box, soft) == ("blurry",)
    det = Detection(box, 0.99, FRONTAL.astype(np.float32))
    good = quality.face_quality(image, det)
    assert good.size == 110.0 and good.yaw == 0.0
    turned = quality.face_quality(image, Detection(box, 0.99, TURNED.astype(np.float32)))
    assert turned.score == 0.0 < good.score  # |yaw| 0.5: the frontal term is 0
    assert quality.box_crop(image, (-10.0, -10.0, 2.0, 2.0)) is None
