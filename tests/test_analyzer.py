"""FaceAnalyzer end to end on real faces: detection -> alignment -> embedding."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceprint import FaceAnalyzer
from faceprint.types import Face


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture(scope="module")
def examples(faces_dir: Path) -> Path:
    return faces_dir / "face_recognition" / "examples"


def _one(analyzer: FaceAnalyzer, image) -> Face:
    faces = analyzer.analyze(image)
    assert len(faces) == 1, f"expected one face, got {len(faces)}"
    return faces[0]


def test_astronaut_has_one_face_with_unit_embedding(analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    face = _one(analyzer, astronaut)
    x1, y1, x2, y2 = face.box
    # Eileen Collins' face sits in the upper middle of the 512x512 picture.
    assert 150 < (x1 + x2) / 2 < 250 and 50 < (y1 + y2) / 2 < 150
    assert 50 < x2 - x1 < 150
    assert face.score > 0.9
    assert face.landmarks.shape == (5, 2)
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert face.embedding is not None and face.embedding.shape == (analyzer.embedder.dim,)
    assert face.embedding.dtype == np.float32
    assert abs(np.linalg.norm(face.embedding) - 1) < 1e-5
    assert face.chip is None


def test_chip_on_request_is_embedder_sized(analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    """The chip is what the embedder takes: one square per network, side by side, each of its own size;
    quality is judged on the first of them."""
    from faceprint.alignment import chip_specs

    face = analyzer.analyze(astronaut, with_chips=True)[0]
    sizes = [spec.size for spec in chip_specs(analyzer.embedder)]
    assert (
        face.chip is not None
        and face.chip.shape == (max(sizes), sum(sizes), 3)
        and face.chip.dtype == np.uint8
    )
    first = analyzer.quality_chip(face)
    assert first.shape == (sizes[0], sizes[0], 3) and np.array_equal(first, face.chip[: sizes[0], : sizes[0]])
    # Re-embedding the returned chip gives the same vector: the chip is what was embedded.
    again = analyzer.embed_chips(face.chip)[0]
    assert np.linalg.norm(again - face.embedding) < 1e-5


def test_same_person_is_closer_than_threshold_and_others_are_not(
    analyzer: FaceAnalyzer, examples: Path
) -> None:
    obama = analyzer.analyze_one(examples / "obama.jpg").embedding
    obama2 = analyzer.analyze_one(examples / "obama2.jpg").embedding
    biden = analyzer.analyze_one(examples / "biden.jpg").embedding
    threshold = analyzer.embedder.threshold
    assert np.linalg.norm(obama - obama2) < threshold
    assert np.linalg.norm(obama - biden) > threshold


def test_two_people_in_one_photo_are_told_apart(
    analyzer: FaceAnalyzer, faces_dir: Path, examples: Path
) -> None:
    faces = analyzer.analyze(faces_dir / "face_recognition/examples/knn_examples/test/obama_and_biden.jpg")
    assert len(faces) >= 2
    # The two people the photo is of are its two largest faces (others are small, in the background).
    both = sorted(faces, key=lambda f: f.box[2] - f.box[0], reverse=True)[:2]
    obama = analyzer.analyze_one(examples / "obama.jpg").embedding
    biden = analyzer.analyze_one(examples / "biden.jpg").embedding
    d = np.array([[np.linalg.norm(f.embedding - ref) for ref in (obama, biden)] for f in both])
    # One face is Obama and the other Biden: each row's nearest reference differs.
    assert sorted(d.argmin(axis=1).tolist()) == [0, 1]


def test_no_face_in_blank_or_noise(analyzer: FaceAnalyzer) -> None:
    rng = np.random.default_rng(0)
    assert analyzer.analyze(np.full((480, 640, 3), 127, np.uint8)) == []
    assert analyzer.analyze(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []
    assert analyzer.analyze(np.zeros((8, 8, 3), np.uint8)) == []


def test_exif_rotated_photo_gives_the_same_face(analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    upright = _one(analyzer, astronaut)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated clockwise; "rotate 90 counter-clockwise to display"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, k=-1))).save(
        buf, format="JPEG", quality=95, exif=exif.tobytes()
    )
    rotated = _one(analyzer, buf.getvalue())
    assert np.allclose(rotated.box, upright.box, atol=6)
    assert np.linalg.norm(rotated.embedding - upright.embedding) < 0.1


def test_grey_photo_still_recognised(analyzer: FaceAnalyzer, examples: Path) -> None:
    colour = analyzer.analyze_one(examples / "obama.jpg").embedding
    grey = np.asarray(Image.open(examples / "obama.jpg").convert("L"))
    assert np.linalg.norm(analyzer.analyze_one(grey).embedding - colour) < 0.25


def test_batch_equals_single(analyzer: FaceAnalyzer, examples: Path, astronaut: np.ndarray) -> None:
    images = [examples / "obama.jpg", astronaut, np.zeros((100, 100, 3), np.uint8), examples / "biden.jpg"]
    batch = analyzer.analyze_batch(images)
    assert [len(faces) for faces in batch] == [len(analyzer.analyze(image)) for image in images]
    assert [len(faces) > 0 for faces in batch] == [True, True, False, True]
    for image, faces in zip(images, batch, strict=True):
        for a, b in zip(analyzer.analyze(image), faces, strict=True):
            assert np.allclose(a.box, b.box, atol=1e-3)
            assert np.linalg.norm(a.embedding - b.embedding) < 1e-4


def test_models_load_lazily_once() -> None:
    fa = FaceAnalyzer()
    assert not fa._detector.loaded and not fa._embedder.loaded
    assert fa.detector is fa.detector and fa.embedder is fa.embedder


def test_unknown_model_name_is_a_clear_error() -> None:
    from faceprint.errors import ModelError

    with pytest.raises(ModelError, match=r"unknown embedder 'nope'.*dlib-resnet"):
        _ = FaceAnalyzer(embedder="nope").embedder


def test_primary_face_ignores_small_background_faces(analyzer: FaceAnalyzer, examples: Path) -> None:
    from faceprint.errors import ManyFacesError, NoFaceError

    faces = analyzer.analyze(examples / "obama.jpg")
    main = analyzer.analyze_one(examples / "obama.jpg")
    # obama.jpg also holds a small, low-contrast false detection in the background: the portrait's
    # subject is the big face, whatever the detector's order.
    assert main.box == max(faces, key=lambda f: f.box[2] - f.box[0]).box
    with pytest.raises(ManyFacesError, match=r"two_people\.jpg: 2 faces of similar size"):
        analyzer.analyze_one(examples / "two_people.jpg")
    with pytest.raises(NoFaceError, match="no face found"):
        analyzer.analyze_one(np.full((200, 200, 3), 255, np.uint8))
