"""Five-point alignment: least-squares similarity, chips whose landmarks sit on the template, rotation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceprint.alignment import align_face, align_faces, similarity_transform, transform_points
from faceprint.embedding.dlib_resnet import TEMPLATE

SIZE = 150


def closed_form_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity by linear least squares on (a, b, tx, ty): x' = a x - b y + tx, ..."""
    rows = np.zeros((2 * len(src), 4))
    rows[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))]
    rows[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))]
    a, b, tx, ty = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    t = np.deg2rad(angle_deg)
    return np.array(
        [[scale * np.cos(t), -scale * np.sin(t), shift[0]], [scale * np.sin(t), scale * np.cos(t), shift[1]]]
    )


@pytest.fixture(scope="module")
def astronaut_landmarks(astronaut: np.ndarray) -> np.ndarray:
    mtcnn = pytest.importorskip("faceie.mtcnn.detect_faces", reason="faceie (test oracle) is not installed")
    from PIL import Image

    found = mtcnn.detect_faces(Image.fromarray(astronaut), rotations=np.array([0.0]), extract_images=None)
    assert len(found.probabilities) == 1
    return found.landmarks[0].reshape(5, 2)


def test_exact_similarity_is_recovered() -> None:
    truth = similarity(30, 1.7, (12.0, -40.0))
    src = transform_points(cv2.invertAffineTransform(truth), TEMPLATE)
    np.testing.assert_allclose(similarity_transform(src, TEMPLATE), truth, atol=1e-4)


def test_fit_is_least_squares() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = similarity(rng.uniform(-60, 60), rng.uniform(0.3, 3), tuple(rng.uniform(-200, 200, 2)))
        src = transform_points(cv2.invertAffineTransform(truth), TEMPLATE) + rng.normal(0, 4, (5, 2))
        ours = transform_points(similarity_transform(src, TEMPLATE), src)
        best = transform_points(closed_form_similarity(src, TEMPLATE), src)
        np.testing.assert_allclose(ours, best, atol=0.01)  # chip pixels


def test_degenerate_landmarks() -> None:
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.full((5, 2), 7.0), TEMPLATE)
    with pytest.raises(ValueError, match="matching point sets"):
        similarity_transform(np.zeros((4, 2)), TEMPLATE)


def test_chip_puts_the_face_on_the_template(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    chip = align_face(astronaut, astronaut_landmarks, TEMPLATE, SIZE)
    assert chip.shape == (SIZE, SIZE, 3) and chip.dtype == np.uint8
    eye_distance = np.linalg.norm(TEMPLATE[1] - TEMPLATE[0])
    # The mapped landmarks sit on the template up to this face's own proportions...
    mapped = transform_points(similarity_transform(astronaut_landmarks, TEMPLATE), astronaut_landmarks)
    assert np.linalg.norm(mapped - TEMPLATE, axis=1).mean() < 0.15 * eye_distance
    # ...and the detector, run again on the chip, finds the face's landmarks where they were mapped.
    from faceie.mtcnn.detect_faces import detect_faces
    from PIL import Image

    found = detect_faces(Image.fromarray(chip), rotations=np.array([0.0]), extract_images=None)
    again = found.landmarks[int(np.argmax(found.probabilities))].reshape(5, 2)
    assert np.linalg.norm(again - mapped, axis=1).max() < 0.06 * eye_distance


@pytest.mark.parametrize("angle", [35.0, -90.0])
def test_rotated_face_gives_the_same_chip(
    astronaut: np.ndarray, astronaut_landmarks: np.ndarray, angle: float
) -> None:
    h, w = astronaut.shape[:2]
    rotation = cv2.getRotationMatrix2D(tuple(astronaut_landmarks[2]), angle, 1.0)
    rotated = cv2.warpAffine(astronaut, rotation, (w, h), flags=cv2.INTER_LINEAR)
    moved = transform_points(rotation, astronaut_landmarks)

    upright = align_face(astronaut, astronaut_landmarks, TEMPLATE, SIZE).astype(float)
    chip = align_face(rotated, moved, TEMPLATE, SIZE).astype(float)
    assert np.abs(chip - upright).mean() < 3.0  # two bilinear resamplings apart, nothing more

    # The fitted transform undoes the rotation: its angle differs from the upright one by `angle`.
    def degrees(m: np.ndarray) -> float:
        return np.rad2deg(np.arctan2(m[1, 0], m[0, 0]))

    turn = degrees(similarity_transform(moved, TEMPLATE)) - degrees(
        similarity_transform(astronaut_landmarks, TEMPLATE)
    )
    assert (turn - angle + 180) % 360 - 180 == pytest.approx(0, abs=0.01)


def test_batch_equals_single(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    shifted = astronaut_landmarks + np.array([5.0, -3.0])
    chips = align_faces(astronaut, [astronaut_landmarks, shifted], TEMPLATE, SIZE)
    assert chips.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_array_equal(chips[1], align_face(astronaut, shifted, TEMPLATE, SIZE))
    assert align_faces(astronaut, [], TEMPLATE, SIZE).shape == (0, SIZE, SIZE, 3)


def test_margin_crop_maps_the_grown_box_onto_the_chip() -> None:
    from faceprint.alignment import MarginCrop, cut_chips

    # A white box on black: with margin 0.25 the box fills the middle 2/3 of the chip on each axis.
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:160] = 255
    chip = cut_chips(image, [((100.0, 50.0, 160.0, 150.0), np.zeros((5, 2)))], [MarginCrop(90, 0.25)])[0]
    rows = np.flatnonzero(chip[:, 45, 0] > 127)
    cols = np.flatnonzero(chip[45, :, 0] > 127)
    assert abs(rows[0] - 15) <= 1 and abs(rows[-1] - 74) <= 1  # 90 * 0.25 / 1.5 = 15 px margin
    assert abs(cols[0] - 15) <= 1 and abs(cols[-1] - 74) <= 1  # width stretched to the square too


def test_several_specs_sit_side_by_side(astronaut: np.ndarray, astronaut_landmarks: np.ndarray) -> None:
    from faceprint.alignment import MarginCrop, TemplateAlign, cut_chips, split_chips

    box = (150.0, 50.0, 260.0, 180.0)
    specs = [TemplateAlign(SIZE, TEMPLATE), MarginCrop(160, 0.15)]
    both = cut_chips(astronaut, [(box, astronaut_landmarks)], specs)
    assert both.shape == (1, 160, SIZE + 160, 3)
    first, second = split_chips(both, specs)
    np.testing.assert_array_equal(first[0], align_face(astronaut, astronaut_landmarks, TEMPLATE, SIZE))
    np.testing.assert_array_equal(second, cut_chips(astronaut, [(box, astronaut_landmarks)], specs[1:]))
    assert not both[0, SIZE:, :SIZE].any()  # the shorter chip is padded black below
