"""Enrolment policy and identification on real photos through the default pipeline."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceprint.gallery import Gallery
from faceprint.io import load_image
from faceprint.recognizer import Recognizer


def lfw(lfw_dir: Path, name: str, number: int = 1) -> Path:
    return lfw_dir / name / f"{name}_{number:04d}.jpg"


def test_identify_names_both_people_of_a_group_photo(enrolled_url: str, knn_dir: Path, analyzer) -> None:
    with Gallery.open(enrolled_url) as g:
        recognizer = Recognizer(g, analyzer)
        matches = recognizer.identify(knn_dir / "test" / "obama_and_biden.jpg", top_k=2)
        threshold = recognizer.open_set_threshold().threshold
    # Left to right: Biden, Obama, and a child in the corner who is nobody we know.
    by_x = sorted(matches, key=lambda m: m.face.box[0])
    assert [m.name for m in by_x] == ["biden", "obama", "unknown"]
    for m in by_x:
        assert m.threshold == threshold and m.gallery_size == 2
        assert m.margin == pytest.approx(m.candidates[1].distance - m.candidates[0].distance)
    for m in by_x[:2]:
        assert m.known and m.distance <= threshold and 0.5 < m.confidence <= 1.0
        # The runner-up is the other person, farther away.
        assert m.candidates[1].name not in (m.name, "unknown")
        assert m.candidates[1].distance > m.distance
    child = by_x[2]
    assert child.person_id is None and child.distance > threshold and child.confidence < 0.5


def test_a_confirmation_on_a_group_photo_is_about_the_face_of_that_person(
    enrolled_url: str, knn_dir: Path, analyzer
) -> None:
    """With several faces and no face index, the face a correction means is the one face near the
    named person (``Gallery.distances_to``, from that person's templates alone)."""
    group = knn_dir / "test" / "obama_and_biden.jpg"
    with Gallery.open(enrolled_url) as g:
        recognizer = Recognizer(g, analyzer)
        faces = {m.name: m.face.embedding for m in recognizer.identify(group)}
        for name in ("obama", "biden"):
            done = recognizer.confirm(group, name)
            assert done.template_id is not None, done
            added = next(t for t in g.templates(name) if t.id == done.template_id)
            want = faces[name] / np.linalg.norm(faces[name])
            # The same face's embedding, stored normalised (float32 rounding): 1e-5.
            np.testing.assert_allclose(added.embedding, want, atol=1e-5)
            distances = g.distances_to(name, np.stack(list(faces.values())), recognizer.key)
            assert int(np.argmin(distances)) == list(faces).index(name)


def test_unenrolled_people_are_unknown(enrolled_url: str, new_gallery_url, knn_dir: Path, analyzer) -> None:
    with Gallery.open(enrolled_url) as g:
        recognizer = Recognizer(g, analyzer)
        matches = recognizer.identify(knn_dir / "test" / "kit_with_rose.jpg")
        assert len(matches) == 2
        assert all(m.name == "unknown" and not m.known and m.confidence < 0.5 for m in matches)
        # The threshold decides: a lax one per call turns the nearest stranger into a (wrong) match.
        faces = [m.face for m in matches]
        assert all(m.known for m in recognizer.match_faces(faces, threshold=1.5))
    with Gallery.open(new_gallery_url("empty")) as empty:
        for m in Recognizer(empty, analyzer).match_faces(faces):
            assert m.name == "unknown" and m.distance == float("inf") and m.candidates == ()


def test_verify_same_and_different(enrolled_url: str, lfw_dir: Path, analyzer) -> None:
    """Powell against 3 more photos of himself and 5 of Blair: every decision agrees with its confidence
    (above 0.5 exactly when "same"), and at a false-accept rate of 0.1% no more than one of these five
    different-person pairs may pass (Powell 1 / Blair 5 sits right at the FaceNet-based embedders'
    threshold)."""
    probe = lfw(lfw_dir, "Colin_Powell", 1)
    with Gallery.open(enrolled_url) as g:
        recognizer = Recognizer(g, analyzer)
        same = [recognizer.verify(probe, lfw(lfw_dir, "Colin_Powell", n)) for n in (2, 5, 9)]
        diff = [recognizer.verify(probe, lfw(lfw_dir, "Tony_Blair", n)) for n in (1, 2, 3, 4, 5)]
    assert all(v.same and v.distance < v.threshold and v.confidence > 0.9 for v in same), same
    assert sum(v.same for v in diff) <= 1, diff
    assert all(v.same == (v.confidence > 0.5) for v in same + diff)
    assert max(v.distance for v in same) < min(v.distance for v in diff)


def test_enrolment_refusals_picks_and_dedup(
    gallery_url: str, tmp_path: Path, lfw_dir: Path, analyzer
) -> None:
    from skimage import data

    blair, powell = load_image(lfw(lfw_dir, "Tony_Blair")), load_image(lfw(lfw_dir, "Colin_Powell"))
    side_by_side = np.hstack([blair, powell])
    # A big face with a far smaller one in the corner (a bystander): the big one is enrolled.
    with_bystander = cv2.resize(blair, None, fx=2, fy=2)
    with_bystander[-90:, -90:] = cv2.resize(powell, (90, 90), interpolation=cv2.INTER_AREA)
    with Gallery.open(gallery_url) as g:
        several = Recognizer(g, analyzer).enroll("blair", side_by_side)
        assert several.status == "refused" and several.reason.startswith("2 faces of similar size found")
        no_face = Recognizer(g, analyzer).enroll("coffee", data.coffee())
        assert no_face.status == "refused" and no_face.reason == "no face found"
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(b"\xff\xd8 not really a jpeg")
        unreadable = Recognizer(g, analyzer).enroll("x", broken)
        assert unreadable.status == "refused" and str(broken) in unreadable.reason
        assert g.people() == []

        main = Recognizer(g, analyzer).enroll("blair", with_bystander)
        assert main.status == "enrolled" and "ignored 1 much smaller face" in main.reason

        # Picking the right-hand face of the pair enrols Powell, not Blair.
        faces = analyzer.analyze(side_by_side)
        right = int(np.argmax([f.box[0] for f in faces]))
        picked = Recognizer(g, analyzer).enroll("powell", side_by_side, face_index=right)
        assert picked.status == "enrolled"
        (blair_t,) = g.templates("blair")
        (powell_t,) = g.templates("powell")
        assert np.linalg.norm(powell_t.embedding - faces[right].embedding) < 1e-5
        (powell_alone,) = analyzer.analyze(powell)
        assert np.linalg.norm(powell_t.embedding - powell_alone.embedding) < 0.1
        assert np.linalg.norm(blair_t.embedding - powell_alone.embedding) > 0.3

        path = lfw(lfw_dir, "Tony_Blair", 2)
        assert Recognizer(g, analyzer).enroll("blair", path).status == "enrolled"
        again = Recognizer(g, analyzer).enroll("blair", path)
        assert again.status == "skipped" and g.person("blair").n_templates == 2
        other = Recognizer(g, analyzer).enroll("not blair", path)
        assert other.status == "refused" and "already enrolled as 'blair'" in other.reason


def test_quality_flags_small_and_blurry(gallery_url: str, lfw_dir: Path, analyzer) -> None:
    image = load_image(lfw(lfw_dir, "Tony_Blair"))
    (face,) = analyzer.analyze(image)
    # The face alone (LFW photos often show a bystander at the edge), shrunk to ~30 px in a grey frame.
    x1, y1, x2, y2 = (round(v) for v in face.box)
    margin = (x2 - x1) // 3
    crop = image[max(0, y1 - margin) : y2 + margin, max(0, x1 - margin) : x2 + margin]
    scale = 30 / (x2 - x1)
    shrunk = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small = np.full((120, 120, 3), 128, np.uint8)
    small[30 : 30 + shrunk.shape[0], 30 : 30 + shrunk.shape[1]] = shrunk
    blurry = cv2.GaussianBlur(image, (0, 0), 4)
    with Gallery.open(gallery_url) as g:
        sharp = Recognizer(g, analyzer).enroll("blair", image)
        assert sharp.status == "enrolled" and sharp.flags == ()
        tiny = Recognizer(g, analyzer).enroll("blair", small)
        assert tiny.status == "enrolled" and "small" in tiny.flags
        assert g.templates("blair")[-1].quality_flags == tiny.flags
        soft = Recognizer(g, analyzer).enroll("blair", blurry, reject_low_quality=True)
        assert soft.status == "refused" and "blurry" in soft.flags
        assert g.person("blair").n_templates == 2


def test_enroll_dir_reports_refusals_and_resumes(gallery_url: str, lfw_people, analyzer) -> None:
    from skimage import data

    root = lfw_people({"Tony_Blair": 2, "Colin_Powell": 2})
    (root / "Coffee").mkdir()
    cv2.imwrite(str(root / "Coffee" / "cup.png"), data.coffee()[:, :, ::-1])
    seen = []
    with Gallery.open(gallery_url) as g:
        report = Recognizer(g, analyzer).enroll_dir(root, progress=lambda r, i, n: seen.append((i, n)))
        assert seen == [(i, 5) for i in range(1, 6)]
        assert len(report.enrolled) == 4
        assert [(r.name, r.reason) for r in report.refused] == [("Coffee", "no face found")]
        assert [(p.name, p.n_templates) for p in g.people()] == [("Colin_Powell", 2), ("Tony_Blair", 2)]
        again = Recognizer(g, analyzer).enroll_dir(root)
        assert len(again.skipped) == 4 and not again.enrolled and len(again.refused) == 1


def test_several_templates_per_person_either_combination(
    gallery_url: str, lfw_people, lfw_dir: Path, analyzer
) -> None:
    path = gallery_url
    with Gallery.open(path) as g:
        Recognizer(g, analyzer).enroll_dir(lfw_people({"Tony_Blair": 3, "Colin_Powell": 3}))
    names = ["Tony_Blair", "Colin_Powell"]
    probes = [analyzer.analyze(lfw(lfw_dir, name, 4))[0] for name in names]
    templates = {name: np.stack([t.embedding for t in Gallery.open(path).templates(name)]) for name in names}
    for combine in ("nearest", "mean"):
        with Gallery.open(path, combine=combine) as g:
            matches = Recognizer(g, analyzer).match_faces(probes, top_k=2)
        assert [m.candidates[0].name for m in matches] == names
        for probe, m in zip(probes, matches, strict=True):
            own = templates[m.candidates[0].name]
            if combine == "nearest":
                want = np.linalg.norm(own - probe.embedding, axis=1).min()
            else:
                centre = own.sum(axis=0) / np.linalg.norm(own.sum(axis=0))
                want = np.linalg.norm(centre - probe.embedding)
            assert m.distance == pytest.approx(want, abs=1e-4)


def test_open_set_threshold_follows_gallery_size_and_target(gallery_url: str, analyzer) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Gallery.open(gallery_url) as g:
        recognizer = Recognizer(g, analyzer)
        key = recognizer.key
        limits = []
        for n in (10, 100, 300):
            with g.store.transaction():
                for i in range(len(g.people()), n):
                    g.add_template(
                        g.add_person(f"p{i}"), vectors[i], embedder=key.name, embedder_version=key.version
                    )
            found = recognizer.open_set_threshold()
            assert found.people == n and found.source == "FPIR target"
            # The model's FPIR at its own threshold is the target (bisection to ~1e-15 in distance).
            assert found.expected_fpir == pytest.approx(0.01, rel=1e-6)
            limits.append(found.threshold)
        assert limits[0] > limits[1] > limits[2]  # more people enrolled: a stricter threshold
        # A second template makes that person's mean nearer to everyone: stricter again.
        g.add_template("p0", vectors[0] + 0.1 * vectors[1], embedder=key.name, embedder_version=key.version)
        assert recognizer.open_set_threshold().threshold < limits[2]
        g.set_fpir_target(key, 0.05)
        assert recognizer.open_set_threshold().threshold > limits[2]
        g.set_threshold(key, 0.3)
        assert recognizer.open_set_threshold().source == "gallery setting"
        assert recognizer.open_set_threshold(0.2).threshold == 0.2


def test_rejection_stops_that_face_and_faces_like_it_confirmation_passes_the_gate(
    gallery_url: str, lfw_dir: Path, analyzer
) -> None:
    with Gallery.open(gallery_url) as g:
        assert Recognizer(g, analyzer).enroll("blair", lfw(lfw_dir, "Tony_Blair", 1)).status == "enrolled"
        recognizer = Recognizer(g, analyzer, threshold=1.5)  # lax: anyone is named blair
        powell = [recognizer.identify(lfw(lfw_dir, "Colin_Powell", i))[0] for i in (1, 2, 3)]
        assert [m.name for m in powell] == ["blair"] * 3
        recognizer.reject(lfw(lfw_dir, "Colin_Powell", 1), "blair")
        # That face and the other photos of Powell (within the 1:1 threshold of it) are no longer blair.
        again = [recognizer.match_faces([m.face])[0] for m in powell]
        assert [(m.name, m.rejected) for m in again] == [("unknown", ("blair",))] * 3
        # Blair himself still is, and his template is still there.
        assert recognizer.identify(lfw(lfw_dir, "Tony_Blair", 2))[0].name == "blair"
        assert g.person("blair").n_templates == 1
        # Confirming a good photo adds a template and withdraws rejections of faces like it.
        done = recognizer.confirm(lfw(lfw_dir, "Colin_Powell", 2), "blair")
        assert done.template_id is not None and done.rejections_withdrawn == 1
        assert g.person("blair").n_templates == 2
        # A face under the enrolment size gate is confirmed without becoming a template.
        small = cv2.resize(
            load_image(lfw(lfw_dir, "Tony_Blair", 3)), (100, 100), interpolation=cv2.INTER_AREA
        )
        result = recognizer.confirm(small, "blair")
        assert result.template_id is None and "small" in result.reason
        assert g.person("blair").n_templates == 2
        assert len(g.corrections(recognizer.key, "blair", "confirm")) == 2
