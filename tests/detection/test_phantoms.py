"""MTCNN's phantom filter (detection/mtcnn_phantoms.py): face_recognition's own expectations for its test
images hold by default, real faces in group photos survive, and the package's cascade stays available."""

from __future__ import annotations

import numpy as np
import pytest

from faceprint.detection import mtcnn_phantoms as P
from faceprint.detection.mtcnn import MTCNNDetector
from faceprint.errors import ModelError
from faceprint.io import load_image

# face_recognition's tests expect exactly one face in each of these (test_api.py: face_locations and
# batch_face_locations); the mtcnn package's cascade also reports a dark background object in the first two.
ONE_FACE = [
    "face_recognition/tests/test_images/obama.jpg",
    "face_recognition/tests/test_images/obama_partial_face.jpg",
    "face_recognition/tests/test_images/obama_partial_face2.jpg",
    "face_recognition/tests/test_images/32bit.png",
]
# Group photos whose every detection is a real face (checked by eye): the filter must keep them all.
GROUPS = {
    "facenet_pytorch/data/multiface.jpg": 6,
    "face_recognition/examples/two_people.jpg": 2,
    "face_recognition/examples/knn_examples/test/obama_and_biden.jpg": 3,  # and the child in the corner
    "face_recognition/examples/knn_examples/test/kit_with_rose.jpg": 2,
}


@pytest.fixture(scope="module")
def filtered() -> MTCNNDetector:
    return MTCNNDetector()


@pytest.fixture(scope="module")
def package() -> MTCNNDetector:
    return MTCNNDetector(phantom_filter=False)


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("name", ONE_FACE)
def test_one_face_in_face_recognitions_test_images(name, faces_dir, filtered, package):
    image = load_image(faces_dir / name)
    (face,) = filtered.detect(image)
    everything = package.detect(image)
    # The face kept is the cascade's best one, untouched (same box, landmarks, score).
    assert face.box == everything[0].box and face.score == everything[0].score
    np.testing.assert_array_equal(face.landmarks, everything[0].landmarks)
    assert face.score > 0.95 and face.width > 150


def test_the_dark_background_object_is_what_goes(faces_dir, filtered, package):
    """obama.jpg at 0.795 and obama_partial_face.jpg at 0.949: the same patch of dark suit below the face,
    so no score threshold removes it from both without removing real faces elsewhere."""
    for name in ONE_FACE[:2]:
        image = load_image(faces_dir / name)
        face, phantom = package.detect(image)
        assert 0.7 < phantom.score < face.score
        assert phantom.box[1] > face.box[3] + 400  # far below the face, near the bottom of the photo
        assert all(_iou(d.box, phantom.box) == 0 for d in filtered.detect(image))


def test_one_face_each_in_a_batch(faces_dir, filtered):
    images = [load_image(faces_dir / name) for name in ONE_FACE]
    assert [len(dets) for dets in filtered.detect_batch(images)] == [1, 1, 1, 1]


def test_one_face_each_through_the_analyzer(faces_dir):
    """The default pipeline (detector defaults, embedder) sees one face in each, in a batch too."""
    from faceprint.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer()
    images = [load_image(faces_dir / name) for name in ONE_FACE]
    assert [len(faces) for faces in analyzer.analyze_batch(images)] == [1, 1, 1, 1]


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_real_faces_in_group_photos_survive(name, faces_dir, filtered, package):
    image = load_image(faces_dir / name)
    kept, everything = filtered.detect(image), package.detect(image)
    assert len(everything) == GROUPS[name]
    assert [d.box for d in kept] == [d.box for d in everything]


def test_bad_option_is_a_model_error():
    with pytest.raises(ModelError, match="phantom_filter must be True or False"):
        MTCNNDetector(phantom_filter="yes")


def _fake_onet(fixed_in_image: bool):
    """An O-Net stand-in that sees a face at (100, 100)-(200, 200) with landmarks either fixed in the image
    (a real face) or at the same place in every window it is shown (a phantom)."""
    image_marks = np.array([[130, 130], [170, 130], [150, 150], [135, 175], [165, 175]], np.float64)

    def run(boxes: np.ndarray):
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        if fixed_in_image:
            fx = (image_marks[None, :, 0] - boxes[:, :1] + 1) / w[:, None]
            fy = (image_marks[None, :, 1] - boxes[:, 1:2] + 1) / h[:, None]
        else:
            fx = np.tile((image_marks[:, 0] - 99) / 101, (len(boxes), 1))
            fy = np.tile((image_marks[:, 1] - 99) / 101, (len(boxes), 1))
        return np.full(len(boxes), 0.7, np.float32), np.concatenate([fx, fy], axis=1)

    return run


def test_follow_is_zero_for_landmarks_fixed_in_the_image_and_one_for_a_window_bound_phantom():
    box = np.array([[100.0, 100.0, 200.0, 200.0]])
    looks, follow = P.second_look(box, _fake_onet(fixed_in_image=True))
    assert looks[0] == pytest.approx(0.7) and follow[0] == pytest.approx(0.0, abs=1e-9)
    looks, follow = P.second_look(box, _fake_onet(fixed_in_image=False))
    assert follow[0] == pytest.approx(1.0, abs=1e-9)
    assert P.phantoms(np.array([0.7, 0.7, 0.5]), np.array([0.0, 1.0, 0.0])).tolist() == [False, True, True]


def test_windows_are_the_square_and_its_four_shifts():
    (wins,) = P.windows(np.array([[10.0, 20.0, 30.0, 60.0]]))  # 20 x 40 -> a 40 px square
    assert wins[0].tolist() == [0.0, 20.0, 40.0, 60.0]
    assert (wins[1:, 0] - wins[0, 0]).tolist() == [-4.0, 4.0, 0.0, 0.0]
    assert (wins[1:, 1] - wins[0, 1]).tolist() == [0.0, 0.0, -4.0, 4.0]
