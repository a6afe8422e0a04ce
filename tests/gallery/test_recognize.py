"""Enrolment policy and identification on real photos through the default pipeline."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceprint.gallery import Gallery
from faceprint.io import load_image
from faceprint.recognizer import Recognizer


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory, knn_dir: Path, analyzer) -> Path:
    """A gallery file holding obama and biden (two photos each) from the knn train folder."""
    path = tmp_path_factory.mktemp("gallery") / "g.sqlite3"
    with Gallery.open(path) as g:
        for name in ("obama", "biden"):
            for image in sorted((knn_dir / "train" / name).iterdir()):
                result = g.enroll_image(name, image, analyzer)
                assert result.status == "enrolled", result
    return path


def test_identify_names_both_people_of_a_group_photo(enrolled: Path, knn_dir: Path, analyzer) -> None:
    with Gallery.open(enrolled) as g:
        matches = Recognizer(g, analyzer).identify(knn_dir / "test" / "obama_and_biden.jpg", top_k=2)
    assert sorted(m.name for m in matches) == ["biden", "obama"]
    for m in matches:
        assert m.known and m.distance < g.calibration("dlib-resnet").threshold
        assert 0.5 < m.confidence <= 1.0
        # The runner-up is the other person, farther away.
        assert [c.name for c in m.candidates][1] != m.name
        assert m.candidates[1].distance > m.distance
    # Left to right: in this photo Obama stands on the left.
    by_x = sorted(matches, key=lambda m: m.face.box[0])
    assert [m.name for m in by_x] == ["obama", "biden"]


def test_unenrolled_people_are_unknown(enrolled: Path, knn_dir: Path, analyzer) -> None:
    with Gallery.open(enrolled) as g:
        recognizer = Recognizer(g, analyzer)
        for photo in ("alex_lacamoire1.jpg", "kit_with_rose.jpg"):
            matches = recognizer.identify(knn_dir / "test" / photo)
            assert matches, photo
            assert all(m.name == "unknown" and not m.known for m in matches), photo
            assert all(m.confidence < 0.5 for m in matches)
            # A lax per-call threshold turns the nearest stranger into a (wrong) match: the threshold decides.
            lax = recognizer.identify(knn_dir / "test" / photo, threshold=1.5)
            assert all(m.known for m in lax)


def test_empty_gallery_answers_unknown_with_infinite_distance(
    tmp_path: Path, knn_dir: Path, analyzer
) -> None:
    with Gallery.open(tmp_path / "empty.sqlite3") as g:
        (match,) = Recognizer(g, analyzer).identify(knn_dir / "test" / "obama1.jpg")
    assert match.name == "unknown" and match.distance == float("inf") and match.candidates == ()


def test_verify_same_and_different(enrolled: Path, faces_dir: Path, analyzer) -> None:
    ex = faces_dir / "face_recognition" / "examples"
    with Gallery.open(enrolled) as g:
        recognizer = Recognizer(g, analyzer)
        same = recognizer.verify(ex / "obama.jpg", ex / "obama2.jpg")
        diff = recognizer.verify(ex / "obama.jpg", ex / "biden.jpg")
    assert same.same and not diff.same
    assert same.distance < same.threshold < diff.distance
    assert same.confidence > 0.5 > diff.confidence


def test_enrolment_refusals_and_dedup(tmp_path: Path, knn_dir: Path, analyzer) -> None:
    from skimage import data

    with Gallery.open(tmp_path / "g.sqlite3") as g:
        group = knn_dir / "test" / "obama_and_biden.jpg"
        refused = g.enroll_image("obama", group, analyzer)
        assert refused.status == "refused" and "2 faces" in refused.reason
        no_face = g.enroll_image("coffee", data.coffee(), analyzer)
        assert no_face.status == "refused" and no_face.reason == "no face found"
        unreadable = tmp_path / "broken.jpg"
        unreadable.write_bytes(b"\xff\xd8 not really a jpeg")
        assert g.enroll_image("x", unreadable, analyzer).status == "refused"
        assert g.people() == []

        obama = knn_dir / "train" / "obama" / "obama.jpg"
        assert g.enroll_image("obama", obama, analyzer).status == "enrolled"
        again = g.enroll_image("obama", obama, analyzer)
        assert again.status == "skipped" and g.person("obama").n_templates == 1
        other = g.enroll_image("not obama", obama, analyzer)
        assert other.status == "refused" and "already enrolled as 'obama'" in other.reason

        # Picking a face of a group photo enrols it; the picked face is the one that matches obama.
        faces = analyzer.analyze(group)
        pick = int(
            np.argmin([np.linalg.norm(f.embedding - g.templates("obama")[0].embedding) for f in faces])
        )
        assert g.enroll_image("obama", group, analyzer, face_index=pick).status == "enrolled"
        assert g.person("obama").n_templates == 2


def test_quality_flags_small_and_blurry(tmp_path: Path, knn_dir: Path, analyzer) -> None:
    image = load_image(knn_dir / "train" / "obama" / "obama.jpg")
    (face,) = analyzer.analyze(image)
    side = min(face.box[2] - face.box[0], face.box[3] - face.box[1])
    small = cv2.resize(image, None, fx=30 / side, fy=30 / side, interpolation=cv2.INTER_AREA)
    blurry = cv2.GaussianBlur(image, (0, 0), side / 25)
    with Gallery.open(tmp_path / "g.sqlite3") as g:
        sharp = g.enroll_image("obama", image, analyzer)
        assert sharp.status == "enrolled" and sharp.flags == ()
        tiny = g.enroll_image("obama", small, analyzer)
        assert tiny.status == "enrolled" and "small" in tiny.flags
        assert g.templates("obama")[-1].quality_flags == tiny.flags
        soft = g.enroll_image("obama", blurry, analyzer, reject_low_quality=True)
        assert soft.status == "refused" and "blurry" in soft.flags


def test_enroll_dir_reports_and_resumes(tmp_path: Path, knn_dir: Path, analyzer) -> None:
    seen = []
    with Gallery.open(tmp_path / "g.sqlite3") as g:
        report = g.enroll_dir(knn_dir / "train", analyzer, progress=lambda r, i, n: seen.append((i, n)))
        n_images = sum(1 for p in (knn_dir / "train").glob("*/*") if p.is_file())
        assert len(report.results) == n_images and seen[-1] == (n_images, n_images)
        assert len(report.enrolled) + len(report.refused) == n_images
        assert {p.name for p in g.people()} == {r.name for r in report.enrolled}
        assert {"obama", "biden"} <= {p.name for p in g.people()}
        for r in report.refused:
            assert r.reason
        again = g.enroll_dir(knn_dir / "train", analyzer)
        assert len(again.skipped) == len(report.enrolled) and not again.enrolled
