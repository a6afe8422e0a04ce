"""Choose FaceNet's preprocessing on LFW View 1 (never the 10 folds): MTCNN box + margin crop (FaceNet's
own pipeline) at several margins vs 5-point alignment to a template fitted on the View 1 training
images, one view and with the mirror image; per-image standardisation in every case (the network does it).

The template is where faceprint's MTCNN landmarks land, on average, in the margin crop of the
``pairsDevTrain`` images; the candidates are scored on ``pairsDevTest`` (disjoint people): AUC, EER,
TAR at FAR 1% and the accuracy of a threshold chosen on the other nine tenths of the test pairs.

    python bench/fit_facenet_preprocessing.py [--margins 0.1 0.15 0.2] [--dets dets.npz]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from faceprint.alignment import MarginCrop, TemplateAlign, cut_chips, transform_points
from faceprint.embedding.facenet import INPUT_SIZE, FaceNetEmbedder
from faceprint.evaluation.metrics import eer, kfold_accuracy, roc, threshold_at_far
from faceprint.evaluation.pairs import read_lfw_pairs
from faceprint.io import load_image

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def detect(paths: list[Path], cache: Path | None) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
    """(box, landmarks) of each image's subject (the evaluation runner's choice), cached in ``cache``."""
    from faceprint.analyzer import FaceAnalyzer
    from faceprint.evaluation.cache import Detections
    from faceprint.evaluation.runner import subject_face

    if cache is not None and cache.is_file():
        z = np.load(cache)
        known = {
            str(n): (b, m)
            for n, b, m, f in zip(z["names"], z["boxes"], z["marks"], z["found"], strict=True)
            if f
        }
        return {p: known[f"{p.parent.name}/{p.name}"] for p in paths if f"{p.parent.name}/{p.name}" in known}
    fa, out = FaceAnalyzer(), {}
    for p in paths:
        image = load_image(p)
        face = subject_face(Detections(image.shape[:2], fa.detector.detect(image)))
        if face is not None:
            out[p] = (np.asarray(face.box, np.float32), np.asarray(face.landmarks, np.float32))
    return out


def fit_template(faces: list[tuple[np.ndarray, np.ndarray]], margin: float) -> np.ndarray:
    crop = MarginCrop(INPUT_SIZE, margin)
    return np.mean([transform_points(crop.matrix(b, m), m) for b, m in faces], axis=0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--margins", type=float, nargs="+", default=[0.1, 0.15, 0.2])
    parser.add_argument("--dets", type=Path, help="npz of detections (names, boxes, marks, found)")
    args = parser.parse_args()
    lfw, protocol = DATA / "lfw" / "lfw-deepfunneled", DATA / "lfw" / "protocol"
    train = read_lfw_pairs(protocol / "pairsDevTrain.txt", lfw)
    test = read_lfw_pairs(protocol / "pairsDevTest.txt", lfw)
    faces = detect(sorted(set(train.images) | set(test.images)), args.dets)
    train_faces = [faces[p] for p in sorted(set(train.images)) if p in faces]
    images = sorted(set(test.images))
    print(
        f"View 1: template fitted on {len(train_faces)} pairsDevTrain images; scored on {len(test)} "
        f"pairsDevTest pairs ({len(images)} images, {sum(p not in faces for p in images)} without a face)"
    )
    candidates: list[tuple[str, object]] = [
        (f"margin {m:.2f}", MarginCrop(INPUT_SIZE, m)) for m in args.margins
    ]
    middle = float(np.median(args.margins))
    template = fit_template(train_faces, middle)
    candidates.append((f"5-point template (margin {middle:.2f} frame)", TemplateAlign(INPUT_SIZE, template)))
    embedder = FaceNetEmbedder(flip=False)
    folds = np.arange(len(test)) % 10

    def score(label: str, vectors: np.ndarray) -> tuple[float, float]:
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        d, same = test.distances(dict(zip(images, unit, strict=True))), test.same
        acc, auc = kfold_accuracy(d, same, folds).mean, roc(d, same).auc
        print(
            f"{label:52s} AUC {auc:.5f}  EER {eer(d, same).rate:.2%}  "
            f"TAR@FAR1% {threshold_at_far(d, same, 1e-2).tar:.2%}  accuracy {acc:.2%}",
            flush=True,
        )
        return acc, auc

    results = {}
    for label, spec in candidates:  # one view each (the costly part on a CPU); the mirror for the best
        chips = np.concatenate([cut_chips(load_image(p), [faces[p]], [spec]) for p in images])
        raw = embedder.embed_raw(chips)
        results[label] = (score(label + ", one view", raw), chips, raw)
    best = max(results, key=lambda k: results[k][0])
    _, chips, raw = results[best]
    score(best + ", with the mirror image", raw + embedder.embed_raw(np.ascontiguousarray(chips[:, :, ::-1])))
    print(f"template (margin {middle:.2f} frame):", np.round(template, 1).tolist())
    print(f"best on pairsDevTest: {best}")


if __name__ == "__main__":
    main()
