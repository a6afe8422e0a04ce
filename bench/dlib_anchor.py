"""The anchor: face_recognition's pipeline (dlib HOG detector + 5-point shape predictor + the same ResNet,
all through dlib-bin), used only by benchmarks to compare with faceprint in the same run.

face_recognition itself cannot be installed beside dlib-bin (it requires the source package ``dlib``
and pkg_resources), so this makes the calls it makes with its defaults: HOG upsampled once, the "small"
5-point model, ``compute_face_descriptor`` with num_jitters=1, ``compare_faces`` = Euclidean distance on
the raw descriptors <= 0.6. Encodings are cached per image content in faceprint's cache folder, so
benchmarks sharing images do not pay dlib's time per face twice; the cache folder is keyed by this file's
code and the libraries' versions (``provenance.anchor_fingerprint``), so a change to either starts anew.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from faceprint.io import load_image
from faceprint.models import cache_dir, package_file

TOLERANCE = 0.6  # face_recognition.compare_faces default
_PKG = ("face_recognition_models", "face-recognition-models")


@dataclass(frozen=True)
class AnchorResult:
    embeddings: np.ndarray  # (N, 128) raw dlib descriptors; the centred-box fallback where none was found
    found: np.ndarray  # (N,) bool: the HOG detector found a face


_worker: dict = {}


def _init_worker() -> None:
    import dlib

    shape = package_file(_PKG[0], "models/shape_predictor_5_face_landmarks.dat", _PKG[1])
    net = package_file(_PKG[0], "models/dlib_face_recognition_resnet_model_v1.dat", _PKG[1])
    _worker.update(
        dlib=dlib,
        detector=dlib.get_frontal_face_detector(),
        shape=dlib.shape_predictor(str(shape)),
        net=dlib.face_recognition_model_v1(str(net)),
    )


def _encode(path: str) -> tuple[np.ndarray, bool]:
    dlib = _worker["dlib"]
    image = load_image(path)
    rects = list(_worker["detector"](image, 1))
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
    return vector, bool(rects)


def _content_key(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


def encode_images(paths: Sequence[str | Path], workers: int | None = None) -> AnchorResult:
    """face_recognition-style encodings of the face in each image, cached, in parallel processes."""
    from provenance import anchor_fingerprint

    store = cache_dir() / f"anchor-face-recognition-{anchor_fingerprint()}"
    store.mkdir(parents=True, exist_ok=True)
    keys = [_content_key(Path(p)) for p in paths]
    todo = sorted(
        {k: str(p) for k, p in zip(keys, paths, strict=True) if not (store / f"{k}.npy").exists()}.items()
    )
    if todo:
        workers = workers or os.cpu_count() or 1
        with get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            for (key, _), (vector, found) in zip(
                todo, pool.imap(_encode, [p for _, p in todo], chunksize=16), strict=True
            ):
                # 129 values: the descriptor, then 1.0 if a face was detected.
                np.save(store / f"{key}.npy", np.append(vector, np.float32(found)))
    rows = np.stack([np.load(store / f"{k}.npy", allow_pickle=False) for k in keys])
    return AnchorResult(rows[:, :128].astype(np.float32), rows[:, 128] > 0.5)
