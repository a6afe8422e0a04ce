"""Pairs parsing, pair generation, identification metrics, yaw and corruptions, cache, config parsing —
on hand-built inputs whose answers are worked out in the comments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import DatasetError
from faceprint.evaluation import EvaluationError
from faceprint.evaluation.cache import Detections, EmbeddingCache, array_hash
from faceprint.evaluation.identification import identification_metrics
from faceprint.evaluation.pairs import folder_pairs, read_lfw_pairs
from faceprint.evaluation.runner import PipelineConfig, crop_box, subject_face
from faceprint.evaluation.slices import occlude_eyes, occlude_lower_face
from faceprint.io import labelled_images
from faceprint.types import Detection


def _unit(deg: float) -> np.ndarray:
    r = np.radians(deg)
    return np.array([np.cos(r), np.sin(r)])


def test_identification_metrics_hand_case():
    # Gallery: A at 0 deg, B at 90 deg. Known probes: A at 10 (right, d = 2 sin 5 = 0.174), A at 80
    # (nearer B: rank 2), B at 100 (right). Unknown: at 45 deg (0.765 from both), at 180 (1.414 from B).
    g = np.stack([_unit(0), _unit(90)])
    known = np.stack([_unit(10), _unit(80), _unit(100)])
    unknown = np.stack([_unit(45), _unit(180)])
    m = identification_metrics(g, ["A", "B"], known, ["A", "A", "B"], unknown, far_targets=(0.5, 0.1))
    np.testing.assert_allclose(m.cmc, [2 / 3, 1.0])
    assert (m.rank1, m.rank5) == pytest.approx((2 / 3, 1.0))
    np.testing.assert_allclose(m.unknown_scores, [2 * np.sin(np.radians(22.5)), np.sqrt(2)])
    # FAR <= 1/2 lets the unknown at 0.765 pass but not the one at 1.414: both right probes (0.174)
    # pass, the wrong one never counts -> DIR = 2/3.
    (p,) = m.dir_at_far
    assert p.far == pytest.approx(0.5)
    assert p.dir == pytest.approx(2 / 3)
    assert p.threshold == pytest.approx(2 * np.sin(np.radians(22.5)))
    assert m.refused_far == (0.1,)  # 2 unknown probes cannot resolve a FAR of 0.1


def test_identification_takes_nearest_image_of_an_identity():
    # A has two gallery images at 0 and 60 deg; a probe at 50 deg is 10 deg from A's second image and
    # 40 deg from B (90): rank 1.
    g = np.stack([_unit(0), _unit(60), _unit(90)])
    m = identification_metrics(g, ["A", "A", "B"], _unit(50)[None], ["A"], np.zeros((0, 2)))
    assert m.rank1 == 1.0
    assert m.known_scores[0] == pytest.approx(2 * np.sin(np.radians(5)))


def test_occlusions_cover_the_right_parts(astronaut):
    lm = np.array([[70, 100], [130, 100], [100, 130], [80, 160], [120, 160]], np.float32)
    image = np.full((250, 250, 3), 200, np.uint8)
    eyes = occlude_eyes(image, lm)
    assert (eyes[100, 70] == 0).all() and (eyes[100, 130] == 0).all()
    assert (eyes[160, 80] == 200).all()  # mouth untouched
    lower = occlude_lower_face(image, lm)
    assert (lower[160, 80] == 0).all() and (lower[160, 120] == 0).all()
    assert (lower[100, 70] == 200).all()  # eyes untouched
    assert (image == 200).all()  # the input is never modified


def test_subject_face_is_the_central_one():
    lm = np.zeros((5, 2), np.float32)
    central = Detection((100.0, 100.0, 150.0, 150.0), 0.9, lm)  # 50x50 at the centre of 250x250
    corner = Detection((0.0, 0.0, 70.0, 70.0), 0.99, lm)  # bigger, but 90 px off centre each way
    assert subject_face(Detections((250, 250), [corner, central])) is central
    # Equal offsets: the bigger face wins.
    small = Detection((110.0, 110.0, 140.0, 140.0), 0.99, lm)
    assert subject_face(Detections((250, 250), [small, central])) is central
    assert subject_face(Detections((250, 250), [])) is None


def test_crop_box_is_the_box_resized():
    image = np.zeros((100, 100, 3), np.uint8)
    image[20:60, 30:70] = 255  # a 40x40 white square
    chip = crop_box(image, (30.0, 20.0, 70.0, 60.0), 80)
    assert chip.shape == (80, 80, 3)
    assert chip[5:75, 5:75].min() == 255  # the box fills the chip


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _fake_lfw(root: Path, people: dict[str, int]) -> Path:
    for name, n in people.items():
        (root / name).mkdir(parents=True)
        for k in range(1, n + 1):
            (root / name / f"{name}_{k:04d}.jpg").write_bytes(b"x")
    return root


def test_read_lfw_pairs_folds_and_errors(tmp_path):
    root = _fake_lfw(tmp_path / "img", {"Ann": 3, "Bob": 2, "Cy": 1})
    good = _write(tmp_path / "p.txt", "2 1\nAnn 1 2\nBob 1 Cy 1\nBob 1 2\nAnn 3 Cy 1\n")
    ps = read_lfw_pairs(good, root)
    assert len(ps) == 4 and ps.n_folds == 2
    assert ps.same.tolist() == [True, False, True, False]
    assert ps.folds.tolist() == [0, 0, 1, 1]
    assert ps.pairs[1].b == root / "Cy" / "Cy_0001.jpg"
    assert len(ps.images) == 6  # Ann 1 2 3, Bob 1 2, Cy 1
    with pytest.raises(EvaluationError, match=r"p2.txt:3: expected a different-person"):
        read_lfw_pairs(_write(tmp_path / "p2.txt", "1 1\nAnn 1 2\nBob 1 2\n"), root)
    with pytest.raises(EvaluationError, match="promises 2 folds x 2 pairs = 4 lines, found 2"):
        read_lfw_pairs(_write(tmp_path / "p3.txt", "2 1\nAnn 1 2\nBob 1 Cy 1\n"), root)
    with pytest.raises(EvaluationError, match=r"missing under .*Ann_0009.jpg"):
        read_lfw_pairs(_write(tmp_path / "p4.txt", "1\nAnn 1 9\nBob 1 Cy 1\n"), root)


def test_read_real_lfw_pairs(lfw_protocol, lfw_dir):
    ps = read_lfw_pairs(lfw_protocol / "pairs.txt", lfw_dir)
    assert len(ps) == 6000 and ps.n_folds == 10
    assert np.bincount(ps.folds).tolist() == [600] * 10
    assert all(ps.same[ps.folds == f].sum() == 300 for f in range(10))


def test_folder_pairs_balanced_unique_seeded(tmp_path):
    root = _fake_lfw(tmp_path, {"Ann": 4, "Bob": 3, "Cy": 1, "Di": 2})
    ps = folder_pairs(root, 12, seed=3, n_folds=3)
    same = ps.same
    assert same.sum() == 6 and (~same).sum() == 6
    assert len({frozenset((p.a, p.b)) for p in ps.pairs}) == 12
    assert all((p.a.parent == p.b.parent) == p.same and p.a != p.b for p in ps.pairs)
    assert np.bincount(ps.folds[same]).tolist() == [2, 2, 2]
    assert folder_pairs(root, 12, seed=3, n_folds=3) == ps
    assert folder_pairs(root, 12, seed=4, n_folds=3) != ps
    # Only 6 + 3 + 1 = 10 distinct same-person pairs exist: 100 asked -> all 10 and 10 different.
    capped = folder_pairs(root, 100)
    assert len(capped) == 20 and "10 same" in capped.source


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        labelled_images(tmp_path / "nope")
    _fake_lfw(tmp_path / "one", {"Ann": 1, "Bob": 1})
    with pytest.raises(EvaluationError, match="0 with 2\\+ images"):
        folder_pairs(tmp_path / "one")


def test_cache_round_trip(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    det = Detection((1.0, 2.0, 30.0, 40.0), 0.99, np.arange(10, dtype=np.float32).reshape(5, 2))
    cache.put_detections("mtcnn", {"h1": Detections((250, 200), [det]), "h2": Detections((10, 10), [])})
    got = cache.get_detections("mtcnn", ["h1", "h2", "h3"])
    assert set(got) == {"h1", "h2"}
    assert got["h1"].shape == (250, 200) and got["h2"].faces == []
    (back,) = got["h1"].faces
    assert back.box == det.box and back.score == pytest.approx(0.99)
    np.testing.assert_array_equal(back.landmarks, det.landmarks)
    assert cache.get_detections("other", ["h1"]) == {}
    v = np.linspace(-1, 1, 128, dtype=np.float32)
    cache.put_embeddings("cfg", {"h1": v})
    cache.close()
    reopened = EmbeddingCache(tmp_path / "c.sqlite")
    np.testing.assert_array_equal(reopened.get_embeddings("cfg", ["h1"])["h1"], v)
    assert array_hash(np.zeros((2, 2), np.uint8)) != array_hash(np.zeros((2, 2, 1), np.uint8))


def test_damaged_cache_is_reported(tmp_path):
    bad = _write(tmp_path / "c.sqlite", "this is not a database" * 100)
    with pytest.raises(EvaluationError, match=r"c\.sqlite: embedding cache is damaged"):
        EmbeddingCache(bad)


def test_pipeline_config_parse():
    c = PipelineConfig.parse("big:det.min_face_size=40,flip=on,align=off,emb.runtime=torch,emb.jitter=8")
    assert c.label == "big" and not c.align
    assert c.detector_options == (("min_face_size", 40),)
    # flip=on is the embedder's own flip option
    assert c.embedder_options == (("flip", True), ("jitter", 8), ("runtime", "torch"))
    assert PipelineConfig.parse("emb.flip=true").embedder_options == (("flip", True),)
    assert PipelineConfig.parse("flip=on").label == "flip=on"
    with pytest.raises(EvaluationError, match="unknown key 'colour'"):
        PipelineConfig.parse("x:colour=red")
    with pytest.raises(EvaluationError, match="flip must be on or off"):
        PipelineConfig.parse("x:flip=maybe")
