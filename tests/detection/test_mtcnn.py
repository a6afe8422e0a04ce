"""MTCNN: weight conversion and caching, the nets against an independent NumPy implementation (faceie),
detection on real photos, knobs, batching, and end-to-end parity with the mtcnn package's own
TensorFlow MTCNN (the weights' origin)."""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import threading
from pathlib import Path

import cv2
import lz4.frame
import numpy as np
import pytest
import torch

from faceprint.detection import mtcnn as M
from faceprint.detection import mtcnn_boxes as B
from faceprint.detection import mtcnn_weights as W
from faceprint.detection.taskpool import TaskPool
from faceprint.errors import ImageError, ModelError
from faceprint.models import WeightFile

FACTOR = 0.709


def rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return np.ascontiguousarray(image[:, :, ::-1])


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detector() -> M.MTCNNDetector:
    return M.MTCNNDetector()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FACEPRINT_CACHE_DIR", str(tmp_path))
    return tmp_path


# ---- weights ------------------------------------------------------------------------------------------


def test_checksum_mismatch_is_a_clear_model_error(fresh_cache):
    good = W.WEIGHT_FILES["pnet"]
    bad = WeightFile(good.package, good.relpath, "0" * 64, good.pip_name)
    with pytest.raises(ModelError, match=r"pnet\.lz4: checksum mismatch"):
        W.load_state_dict("pnet", bad)
    assert not list(fresh_cache.glob("*.pt"))


def test_cached_state_dict_is_reused_without_unpickling(fresh_cache, monkeypatch):
    first = W.load_state_dict("rnet")
    assert [p.name for p in fresh_cache.glob("*.pt")] == [
        f"mtcnn-rnet-{W.WEIGHT_FILES['rnet'].sha256[:16]}.pt"
    ]

    def no_unpickling(path):
        raise AssertionError(f"unpickled {path} although the converted cache exists")

    monkeypatch.setattr(W, "_read_arrays", no_unpickling)
    again = W.load_state_dict("rnet")
    assert again.keys() == first.keys()
    assert all(torch.equal(again[k], first[k]) for k in first)


def test_unpickler_builds_nothing_but_arrays(tmp_path):
    # eval, not print: a Ray driver started earlier in the same process replaces builtins.print, so
    # print would pickle under Ray's name.
    class Evil:
        def __reduce__(self):
            return (eval, ("print('this must never run')",))

    path = tmp_path / "evil.lz4"
    path.write_bytes(lz4.frame.compress(pickle.dumps([1.0, Evil()])))
    with pytest.raises(
        ModelError, match=r"evil\.lz4: cannot read MTCNN weights .*refusing to load builtins\.eval"
    ):
        W._read_arrays(path)


def _faceie_weights():
    model = importlib.import_module("faceie.mtcnn.model")
    return model, model.PNetWeights.load(), model.RNetWeights.load(), model.ONetWeights.load()


def test_conversion_matches_faceies_independent_conversion(fresh_cache):
    """faceie converted the same original weights (via facenet-pytorch) on its own: conv kernels (out, in,
    h, w), dense layers (in, out) with rows in NCHW-flatten order, landmark outputs interleaved x, y and
    +1 folded into the x2/y2 box biases."""
    pytest.importorskip("faceie")
    _, fp, fr, fo = _faceie_weights()
    p, r, o = (W.load_state_dict(n) for n in W.NETS)
    np.testing.assert_array_equal(p["conv3.weight"].numpy(), fp.conv3.weights)
    np.testing.assert_array_equal(p["prelu1.weight"].numpy(), fp.prelu1)
    np.testing.assert_array_equal(r["conv3.weight"].numpy(), fr.conv3.weights)
    np.testing.assert_array_equal(r["dense.weight"].numpy().T, fr.linear.weights)  # flatten order
    np.testing.assert_array_equal(o["dense.weight"].numpy().T, fo.linear.weights)
    np.testing.assert_array_equal(o["prelu5.weight"].numpy(), fo.prelu5)
    lm_w, lm_b = o["landmarks.weight"].numpy(), o["landmarks.bias"].numpy()
    np.testing.assert_array_equal(lm_w[:5].T, fo.landmarks.weights[:, 0::2])  # five x, then five y
    np.testing.assert_array_equal(lm_b[5:], fo.landmarks.biases[1::2])
    x2y2_plus_one = np.array([0, 0, 1, 1], np.float32)
    # One float32 addition: a step or two of rounding.
    np.testing.assert_allclose(o["box.bias"].numpy() + x2y2_plus_one, fo.bounding_boxes.biases, atol=1e-6)


# ---- nets ---------------------------------------------------------------------------------------------


def _patches(images: list[np.ndarray], size: int) -> np.ndarray:
    """Face-centred and off-centre (mostly non-face) squares, resized to the net's input."""
    out = []
    for im in images:
        h, w = im.shape[:2]
        s = min(h, w) // 2
        for y, x in ((h // 2 - s // 2, w // 2 - s // 2), (0, 0), (h - s, w - s)):
            out.append(cv2.resize(im[y : y + s, x : x + s], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def test_nets_match_faceies_numpy_nets(detector, lfw_dir):
    """Same pixels into our nets and faceie's NumPy nets: same probabilities, offsets, landmarks."""
    pytest.importorskip("faceie")
    model, *_ = _faceie_weights()
    images = [rgb(p) for p in sorted(lfw_dir.glob("*/*_0001.jpg"))[:8]]
    nets = detector.load()

    def faceie_input(batch: np.ndarray) -> np.ndarray:
        return ((batch.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2)

    # Two float32 implementations (PyTorch vs faceie's NumPy) sum in different orders: 1e-4 is far above
    # their rounding, far below a wrong weight layout (errors of 1e-1).
    crops24 = _patches(images, 24)
    prob, box = nets("rnet", crops24.astype(np.float32))
    ref_prob, ref_box = model.r_net(faceie_input(crops24))
    np.testing.assert_allclose(prob, ref_prob, atol=1e-4)
    np.testing.assert_allclose(box + np.array([0, 0, 1, 1]), ref_box, atol=1e-4)
    assert (prob[0::3] > 0.9).all()  # the face-centred crops are faces

    crops48 = _patches(images, 48)
    prob, box, marks = nets("onet", crops48.astype(np.float32))
    ref_prob, ref_box, ref_marks = model.o_net(faceie_input(crops48))
    np.testing.assert_allclose(prob, ref_prob, atol=1e-4)
    np.testing.assert_allclose(box + np.array([0, 0, 1, 1]), ref_box, atol=1e-4)
    np.testing.assert_allclose(marks[:, :5], ref_marks[:, 0::2], atol=1e-4)
    np.testing.assert_allclose(marks[:, 5:], ref_marks[:, 1::2], atol=1e-4)

    level = cv2.resize(images[0], (125, 125), interpolation=cv2.INTER_AREA)
    prob, box = nets("pnet", level[None].astype(np.float32))
    ref_prob, ref_box = model.p_net(faceie_input(level[None])[0])
    np.testing.assert_allclose(prob[0], ref_prob, atol=1e-4)
    np.testing.assert_allclose(box[0] + np.array([0, 0, 1, 1]), ref_box, atol=1e-4)


# ---- box handling -------------------------------------------------------------------------------------


def _fast_nms(boxes, scores, threshold, mode):
    """Fast NMS one box at a time: a box goes if any higher-scored box, kept or not, overlaps it."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep = []
    for rank, i in enumerate(order):
        for j in order[:rank]:
            w = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            h = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            inter = max(w, 0) * max(h, 0)
            denominator = min(area[i], area[j]) if mode == "min" else area[i] + area[j] - inter
            with np.errstate(divide="ignore", invalid="ignore"):  # degenerate boxes: 0 / 0, 0 / negative
                if inter / denominator > threshold:
                    break
        else:
            keep.append(i)
    return keep


@pytest.mark.parametrize("mode", ["union", "min"])
@pytest.mark.parametrize("n", [0, 1, 300, 700])
def test_nms_is_fast_nms(mode, n):
    rng = np.random.default_rng(n)
    corner = rng.uniform(0, 400, (n, 2))
    boxes = np.hstack([corner, corner + rng.uniform(5, 80, (n, 2))])
    scores = rng.random(n)
    for threshold in (0.5, 0.7):
        assert B.nms(boxes, scores, threshold, mode).tolist() == _fast_nms(boxes, scores, threshold, mode)


def test_nms_with_degenerate_boxes_and_tied_scores_is_fast_nms():
    """Boxes of negative width or height (regression can invert one) never suppress or get suppressed,
    as in the package (overlap 0 / negative area); whole-pixel boxes and tied scores."""
    rng = np.random.default_rng(7)
    corner = np.round(rng.uniform(0, 200, (400, 2)))
    boxes = np.hstack([corner, corner + np.round(rng.uniform(-8, 40, (400, 2)))])
    scores = np.round(rng.random(400), 1)
    assert ((boxes[:, 2:] - boxes[:, :2]) < 0).any(axis=1).sum() > 30
    for mode in ("union", "min"):
        for threshold in (0.3, 0.7):
            assert B.nms(boxes, scores, threshold, mode).tolist() == _fast_nms(boxes, scores, threshold, mode)


@pytest.mark.parametrize("most", [1, 7, 1 << 20])
def test_nms_compares_every_pair_overlapping_in_x_once(most):
    """The sweep behind NMS yields each pair of boxes whose x ranges overlap exactly once, however the
    pairs are split into chunks."""
    rng = np.random.default_rng(most)
    x1 = np.round(rng.uniform(0, 100, 150)).astype(np.float32)
    x2 = x1 + np.round(rng.uniform(-3, 20, 150)).astype(np.float32)
    got = [
        tuple(sorted(pair))
        for first, second in B._pairs_overlapping_in_x(x1, x2, most)
        for pair in zip(first.tolist(), second.tolist(), strict=True)
    ]
    want = {(i, j) for i in range(150) for j in range(i + 1, 150) if min(x2[i], x2[j]) > max(x1[i], x1[j])}
    assert len(got) == len(set(got))
    assert want <= set(got)
    # beyond those, only pairs where one box starts before the other (the first in x1 order) ends
    assert all(x1[j] < x2[i] if (x1[i], i) < (x1[j], j) else x1[i] < x2[j] for i, j in got)


def test_fast_nms_drops_what_a_dropped_box_overlapped():
    """A suppresses B, B overlaps C, A does not overlap C: C goes too (greedy NMS would keep it)."""
    boxes = np.array([[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]], dtype=np.float64)
    assert B.nms(boxes, np.array([0.9, 0.8, 0.7]), 0.3).tolist() == [0]


@pytest.mark.parametrize("size", [(13, 17), (29, 52), (64, 48), (101, 77)])
def test_area_resize_from_the_summed_area_table_is_opencvs(astronaut, size):
    """Small levels come from a summed-area table; they must be OpenCV's INTER_AREA resize of the image
    (fractional pixel weights, odd ratios, a cropped non-square image) up to float rounding."""
    image = np.ascontiguousarray(astronaut[7:480, 3:301])
    height, width = size
    table = cv2.integral(image, sdepth=cv2.CV_32S)
    got = B.area_resize_from_table(table, height, width)
    want = cv2.resize(image.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    assert got.shape == want.shape == (height, width, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


def test_small_levels_use_the_table_and_find_the_same_faces(detector, astronaut, monkeypatch):
    """With every level resized by OpenCV, or every level from the table, detections are the same."""
    want = detector.detect(astronaut)
    real = B.area_resize_from_table
    calls = []
    monkeypatch.setattr(M, "area_resize_from_table", lambda *a: calls.append(a[1:]) or real(*a))
    for scale in (0.0, 1.0):
        monkeypatch.setattr(M, "_TABLE_SCALE", scale)
        calls.clear()
        got = detector.detect(astronaut)
        assert bool(calls) == (scale == 1.0)
        assert len(got) == len(want) == 1
        np.testing.assert_allclose(got[0].box, want[0].box, atol=0.05)
        np.testing.assert_allclose(got[0].landmarks, want[0].landmarks, atol=0.05)


def test_crops_are_tensorflow_crop_and_resize():
    """Bilinear samples from x1 (W-1)/W to x2 (W-1)/W; rows/columns sampled outside the image are grey."""
    image = np.arange(10 * 20 * 3, dtype=np.float32).reshape(10, 20, 3)
    (crop,) = B.crop_resize(image, np.array([[2.0, 1.0, 12.0, 6.0]]), 3)
    xs, ys = np.array([2.0, 7.0, 12.0]) * 19 / 20, np.array([1.0, 3.5, 6.0]) * 9 / 10
    want = np.array([[[(y * 20 + x) * 3 + c for c in range(3)] for x in xs] for y in ys])  # image is linear
    np.testing.assert_allclose(crop, want, rtol=1e-6)  # float32 bilinear weights: a few steps of 6e-8
    (edge,) = B.crop_resize(image, np.array([[-4.0, 0.0, 4.0, 9.0]]), 3)
    assert (edge[:, 0] == 127.5).all() and (edge[:, 1:] != 127.5).all()


def test_grouped_nms_keeps_groups_apart():
    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52], [10, 10, 50, 50]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7])
    assert sorted(B.grouped_nms(boxes, scores, np.array([0, 0, 1]), 0.5).tolist()) == [0, 2]


# ---- real faces ---------------------------------------------------------------------------------------


def _check_face(det, image: np.ndarray) -> None:
    """Landmarks inside the box, in the documented order, eyes above nose above mouth."""
    x1, y1, x2, y2 = det.box
    lm = det.landmarks
    assert lm.shape == (5, 2) and lm.dtype == np.float32
    assert (lm[:, 0] > x1).all() and (lm[:, 0] < x2).all() and (lm[:, 1] > y1).all() and (lm[:, 1] < y2).all()
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left before image-right
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])
    assert 0 <= x1 < x2 <= image.shape[1] + 1 and 0 <= y1 < y2 <= image.shape[0] + 1


def test_obama_one_face_where_dlib_sees_it(detector, faces_dir):
    dlib = pytest.importorskip("dlib")
    image = rgb(faces_dir / "face_recognition/examples/obama.jpg")
    dets = detector.detect(image)
    best = dets[0]
    assert best.score > 0.99
    _check_face(best, image)
    (hog,) = dlib.get_frontal_face_detector()(image, 0)  # independent detector: HOG + linear SVM
    assert iou(best.box, (hog.left(), hog.top(), hog.right(), hog.bottom())) > 0.5
    # Anything else the cascade lets through here is small background texture, well below the face.
    assert all(d.score < best.score and d.width < best.width / 2 for d in dets[1:])
    largest = M.MTCNNDetector(select="largest").detect(image)
    assert len(largest) == 1 and largest[0].box == best.box


@pytest.mark.parametrize(
    "name",
    [
        "face_recognition/examples/two_people.jpg",
        "face_recognition/examples/knn_examples/test/obama_and_biden.jpg",
    ],
)
def test_two_people(detector, faces_dir, name):
    image = rgb(faces_dir / name)
    dets = sorted(detector.detect(image), key=lambda d: -d.width)
    big = dets[:2]
    assert len(big) == 2 and all(d.score > 0.99 for d in big)
    for d in big:
        _check_face(d, image)
    assert iou(big[0].box, big[1].box) == 0  # side by side
    # obama_and_biden.jpg also shows a child's face in the lower corner: smaller, below the two adults.
    assert all(d.width < big[1].width and d.box[1] > max(b.box[3] for b in big) for d in dets[2:])


def test_multiface_several(detector, faces_dir):
    image = rgb(faces_dir / "facenet_pytorch/data/multiface.jpg")
    dets = [d for d in detector.detect(image) if d.score > 0.95]
    assert len(dets) >= 5
    for d in dets:
        _check_face(d, image)
    boxes = [d.box for d in dets]
    assert all(iou(a, b) < 0.3 for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_astronaut_one_face(detector, astronaut):
    (det,) = detector.detect(astronaut)
    assert det.score > 0.99
    _check_face(det, astronaut)
    # Eileen Collins's face is in the upper middle of the 512x512 portrait.
    cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
    assert 150 < cx < 300 and 50 < cy < 200


def test_no_face_in_blank_or_noise(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []


def test_tiny_images_return_nothing():
    assert M.MTCNNDetector().detect(np.zeros((11, 200, 3), np.uint8)) == []
    assert M.MTCNNDetector(min_face_size=40).detect(np.zeros((39, 39, 3), np.uint8)) == []
    # a short side of exactly min_face_size: 47 * (12 / 47) rounds under 12 px, so no pyramid level at all
    assert B.pyramid_scales(47, 52, 47, 0.709) == []
    assert M.MTCNNDetector(min_face_size=47).detect(np.zeros((47, 52, 3), np.uint8)) == []


# ---- API ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_face_size": 0}, "min_face_size"),
        ({"min_face_size": "20"}, "min_face_size"),
        ({"thresholds": (0.6, 0.7)}, "thresholds"),
        ({"thresholds": (0.6, 0.7, 1.5)}, "thresholds"),
        ({"factor": 1.0}, "factor"),
        ({"select": "biggest"}, "select must be one of all, largest, central"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_knobs_are_rejected(kwargs, match):
    with pytest.raises(ModelError, match=match):
        M.MTCNNDetector(**kwargs)


@pytest.mark.parametrize(
    "image", [np.zeros((50, 50), np.uint8), np.zeros((50, 50, 4), np.uint8), np.zeros((50, 50, 3)), [[0]]]
)
def test_bad_images_are_rejected(detector, image):
    with pytest.raises(ImageError, match="image 0 must be an RGB uint8 HxWx3 array"):
        detector.detect(image)


def test_nothing_loads_before_the_first_detection(monkeypatch, astronaut):
    made = []
    real = M.MTCNNNets

    def counting(threads):
        made.append(threads)
        return real(threads)

    monkeypatch.setattr(M, "MTCNNNets", counting)
    det = M.MTCNNDetector(threads=1)
    assert made == []
    results = []
    threads = [threading.Thread(target=lambda: results.append(det.detect(astronaut))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == [1] and len(results) == 4 and all(len(r) == 1 for r in results)


def test_selection(faces_dir):
    image = rgb(faces_dir / "facenet_pytorch/data/multiface.jpg")
    everyone = M.MTCNNDetector().detect(image)
    assert [d.score for d in everyone] == sorted((d.score for d in everyone), reverse=True)
    (largest,) = M.MTCNNDetector(select="largest").detect(image)
    assert largest.width * largest.height == max(d.width * d.height for d in everyone)
    (central,) = M.MTCNNDetector(select="central").detect(image)
    h, w = image.shape[:2]

    def off_centre(d):
        return np.hypot((d.box[0] + d.box[2]) / 2 - w / 2, (d.box[1] + d.box[3]) / 2 - h / 2)

    assert off_centre(central) == min(off_centre(d) for d in everyone)


def test_batch_equals_one_by_one(detector, faces_dir, lfw_dir, astronaut):
    lfw = [rgb(p) for p in sorted(lfw_dir.glob("*/*_0001.jpg"))[:3]]  # same size: one P-Net forward
    images = [*lfw, astronaut, rgb(faces_dir / "face_recognition/examples/two_people.jpg"), lfw[0][:8]]
    batch = detector.detect_batch(images)
    assert len(batch) == len(images) and batch[-1] == []
    for image, got in zip(images, batch, strict=True):
        want = detector.detect(image)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g.box, w.box, atol=1e-3)
            np.testing.assert_allclose(g.landmarks, w.landmarks, atol=1e-3)


# ---- end-to-end parity with the mtcnn package ----------------------------------------------------------
#
# The oracle is the mtcnn package's own TensorFlow implementation of the cascade whose weights we use
# (Keras nets, TensorFlow resizing and crop_and_resize, NumPy box handling), with identical knobs. Its
# one unspecified choice is the order of equal scores: P(face) saturates to exactly 1.0 for many P-Net
# windows and it sorts with NumPy's unstable quicksort, so which of those seeds survives the NMS depends
# on the sort implementation. The oracle is given a stable sort (ties in window order), which is ours.

KNOBS = {"min_face_size": 20, "thresholds": (0.6, 0.7, 0.7), "factor": 0.709}


@pytest.fixture(scope="module")
def package_mtcnn():
    pytest.importorskip("tensorflow", reason="the parity oracle is the mtcnn package on TensorFlow")
    from mtcnn import MTCNN
    from mtcnn.utils import bboxes

    def stable_sort(tensor, scores, ascending=True):
        return tensor[np.argsort(scores if ascending else -scores, kind="stable")]

    patch = pytest.MonkeyPatch()
    patch.setattr(bboxes, "sort_by_scores", stable_sort)
    model = MTCNN()
    p, r, o = KNOBS["thresholds"]
    knobs = {
        "min_face_size": KNOBS["min_face_size"],
        "scale_factor": KNOBS["factor"],
        "threshold_pnet": p,
        "threshold_rnet": r,
        "threshold_onet": o,
    }

    def detect(images: list[np.ndarray]) -> list[np.ndarray]:
        """Per image, rows (x1, y1, x2, y2, score, five x, five y); boxes not clipped (ours are not).
        Pass same-size images together (the package pads a batch to its largest image)."""
        rows = model.detect_faces(images, box_format="xyxy", output_type="numpy", fit_to_image=False, **knobs)
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 16)
        return [rows[rows[:, 0] == i, 1:] for i in range(len(images))]

    yield detect
    patch.undo()


def _assert_same_faces(name: str, ours, theirs: np.ndarray) -> None:
    """The issue's bounds: same face count; each of our faces' box IoU >= 0.9 with its counterpart and
    every landmark within 2 px of it."""
    assert len(ours) == len(theirs), f"{name}: {len(ours)} faces, the package finds {len(theirs)}"
    for det in ours:
        best = max(theirs, key=lambda t: iou(det.box, t[:4]))
        assert iou(det.box, best[:4]) >= 0.9, f"{name}: box {det.box} vs {best[:4]}"
        marks = np.stack([best[5:10], best[10:15]], axis=1)
        err = np.hypot(*(det.landmarks - marks).T).max()
        assert err <= 2.0, f"{name}: landmarks {err:.2f} px off"


@pytest.mark.slow
def test_same_faces_as_the_package_on_the_stills(faces_dir, package_mtcnn):
    """Every photo in the faces folder, downscaled to at most 640 px (keeps the TensorFlow side fast)."""
    det = M.MTCNNDetector(**KNOBS, phantom_filter=False)  # the package's cascade, no second look
    paths = sorted(p for p in faces_dir.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    assert len(paths) >= 40
    found = 0
    for path in paths:
        image = rgb(path)
        scale = 640 / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ours = det.detect(image)
        _assert_same_faces(path.name, ours, package_mtcnn([image])[0])
        found += len(ours)
    assert found >= len(paths)


@pytest.mark.slow
def test_same_faces_as_the_package_on_lfw(lfw_dir, package_mtcnn):
    """200 LFW deep-funneled images (every 40th file), whole."""
    det = M.MTCNNDetector(**KNOBS, phantom_filter=False)  # the package's cascade, no second look
    paths = sorted(lfw_dir.glob("*/*.jpg"))[::40][:200]
    assert len(paths) == 200
    images = [rgb(p) for p in paths]
    theirs = [rows for start in range(0, 200, 50) for rows in package_mtcnn(images[start : start + 50])]
    found = 0
    for path, mine, rows in zip(paths, det.detect_batch(images), theirs, strict=True):
        _assert_same_faces(path.name, mine, rows)
        found += len(mine)
    assert found >= 200


def test_bands_of_a_level_give_the_whole_levels_p_net_map(detector, faces_dir, monkeypatch):
    """P-Net runs on row bands of each level; stitched, they must be the map of the whole level, odd
    sizes included (the last band's ceil-mode pooling)."""
    monkeypatch.setattr(M, "_BAND_CELLS", 1000)
    nets = detector.load()
    image = rgb(faces_dir / "face_recognition/examples/two_people.jpg").astype(np.float32)
    for height, width in ((301, 417), (120, 95), (13, 17)):
        level = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        whole_prob, whole_reg = nets("pnet", level[None].copy())
        lev = M._Level([level], np.array([0]), 1.0)
        lev.resize()
        bands = lev.bands
        assert len(bands) == -(-lev.rows // max(1, 1000 // lev.cols))
        assert len(bands) > 1 or height < 100
        for band in bands:
            lev.run_band(nets, band)
        prob = np.concatenate([lev.maps[first][0] for first, _ in bands], axis=1)
        reg = np.concatenate([lev.maps[first][1] for first, _ in bands], axis=1)
        assert prob.shape == whole_prob.shape == (1, lev.rows, lev.cols)
        # A band and its whole level go through convolutions of different shapes, for which oneDNN picks
        # kernels per shape and per CPU: the same sums in another order differ by float32 steps (1.2e-6
        # seen in a probability on one CPU). A wrong band edge or pooling moves values by 1e-2 or more.
        np.testing.assert_allclose(prob, whole_prob, rtol=0, atol=1e-5)
        np.testing.assert_allclose(reg, whole_reg, rtol=0, atol=1e-4)


def test_small_bands_split_a_level_the_same_way(detector, faces_dir, monkeypatch):
    """Detections do not depend on how the levels are cut into bands or how many threads share them."""
    image = rgb(faces_dir / "face_recognition/examples/two_people.jpg")
    want = detector.detect(image)
    monkeypatch.setattr(M, "_BAND_CELLS", 700)  # many bands per level
    for threads in (1, 3):
        got = M.MTCNNDetector(threads=threads).detect(image)
        assert len(got) == len(want) == 2
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g.box, w.box, atol=1e-3)
            np.testing.assert_allclose(g.landmarks, w.landmarks, atol=1e-3)


def test_torch_threads_are_restored_after_detection(astronaut):
    """Ops run on one torch thread while detections run (the detector parallelises itself); each
    detecting thread gets its own setting back, and other threads are never touched."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        det = M.MTCNNDetector(threads=2)
        seen, after = [], []
        real_call = M.MTCNNNets.__call__

        def spy(self, key, pixels):
            seen.append(torch.get_num_threads())
            return real_call(self, key, pixels)

        def detect_in_a_thread():
            torch.set_num_threads(2)
            assert len(det.detect(astronaut)) == 1
            after.append(torch.get_num_threads())

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(M.MTCNNNets, "__call__", spy)
            workers = [threading.Thread(target=detect_in_a_thread) for _ in range(3)]
            for t in workers:
                t.start()
            det.detect(astronaut)
            for t in workers:
                t.join()
        assert seen and set(seen) == {1}  # callers and the pool's helper alike
        assert after == [2, 2, 2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_detection_works_in_a_forked_child(astronaut):
    """A forked child (a pre-forked server worker) has none of the parent's helper threads; its first
    detection must start its own instead of waiting forever."""
    det = M.MTCNNDetector(threads=2)
    assert len(det.detect(astronaut)) == 1  # helpers started in the parent
    pid = os.fork()
    if pid == 0:  # child: a hang ends by SIGALRM, a wrong answer by exit status 1
        signal.alarm(60)
        ok = len(det.detect(astronaut)) == 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"


def test_pool_runs_everything_and_reraises_the_first_error():
    pool = TaskPool(3)
    assert pool.map(lambda x: x * x, list(range(50))) == [x * x for x in range(50)]
    ran = []

    def task(x):
        ran.append(x)
        if x == 3:
            raise ValueError("task 3 broke")
        return x

    with pytest.raises(ValueError, match="task 3 broke"):
        pool.map(task, list(range(10)))
    assert sorted(ran) == list(range(10))  # later items still ran: none waits forever on a missing one
    assert pool.map(str, [1, 2]) == ["1", "2"]  # the pool still works


@pytest.mark.parametrize("step", ["resize", "integral"])
def test_a_failing_pyramid_level_raises_in_the_caller(detector, astronaut, monkeypatch, step):
    """Levels are resized (big ones by OpenCV, small ones from a summed-area table) on the pool's threads;
    their errors must surface in the detecting thread, and the levels waiting on them must not hang."""

    def out_of_memory(*args, **kwargs):
        raise MemoryError("no room for the level")

    monkeypatch.setattr(M.cv2, step, out_of_memory)
    with pytest.raises(MemoryError, match="no room for the level"):
        detector.detect(astronaut)
    monkeypatch.undo()
    assert len(detector.detect(astronaut)) == 1  # the pool still works
