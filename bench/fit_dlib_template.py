"""Fit the dlib-resnet alignment template so that our chips match dlib's own ``get_face_chip``.

How: for each of N LFW images, dlib's pipeline (HOG detector, 5-point shape predictor,
``get_face_chip_details(size=150, padding=0.25)``) gives the exact image->chip transform M_i that dlib uses
(the affine map taking the rotated corners of the chip rectangle to the chip's corner pixels, as dlib's
``get_mapping_to_chip`` does); MTCNN (faceie's NumPy port, same weights as faceprint's) finds the five
landmarks p_i of the same face. The template T minimising sum_i ||M_i(p_i) - T||^2 is the mean of the
mapped landmarks M_i(p_i); it is where MTCNN's points sit, on average, in dlib's chips.

Check: each face is then aligned our way (least-squares similarity p_i -> T, bilinear warp) and the
chip's embedding is compared with the embedding of dlib's chip of the same face (distance between
L2-normalised vectors), next to the distances between different images of the same person for scale.
Prints the template to paste into src/faceprint/embedding/dlib_resnet.py.

    nice -n 10 python bench/fit_dlib_template.py --faces 1000
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import dlib
import numpy as np
from faceie.mtcnn.detect_faces import detect_faces
from PIL import Image

from faceprint.alignment import similarity_transform, transform_points
from faceprint.embedding.dlib_resnet import TEMPLATE, DlibResNetEmbedder
from faceprint.models import package_file

REPO = Path(__file__).resolve().parents[1]
LFW = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data")) / "lfw" / "lfw-deepfunneled"
SIZE, PADDING = 150, 0.25


def dlib_chip_transform(details: dlib.chip_details) -> np.ndarray:
    """dlib's image->chip affine map: rotated rectangle corners onto the chip's corner pixels."""
    rect, angle = details.rect, details.angle
    cx, cy = (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2
    c, s = np.cos(angle), np.sin(angle)
    corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.right(), rect.bottom()]])
    rotated = (corners - (cx, cy)) @ np.array([[c, -s], [s, c]]).T + (cx, cy)
    chip = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]])
    return cv2.getAffineTransform(rotated.astype(np.float32), chip.astype(np.float32))


def nearest_to_centre(centres: np.ndarray, shape: tuple[int, ...]) -> int:
    return int(np.argmin(np.sum((centres - (shape[1] / 2, shape[0] / 2)) ** 2, axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=1000)
    parser.add_argument("--lfw", type=Path, default=LFW)
    args = parser.parse_args()

    models = Path(package_file("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat", "x"))
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models))
    files = sorted(args.lfw.glob("*/*.jpg"))
    files = [files[i] for i in np.linspace(0, len(files) - 1, args.faces).astype(int)]

    people, images, mtcnn_points, transforms, dlib_chips = [], [], [], [], []
    start = time.time()
    for n, path in enumerate(files):
        image = np.asarray(Image.open(path).convert("RGB"))
        rects = list(detector(image, 1))
        found = detect_faces(Image.fromarray(image), rotations=np.array([0.0]), extract_images=None)
        if not rects or len(found.probabilities) == 0:
            continue
        rect = rects[nearest_to_centre(np.array([[r.center().x, r.center().y] for r in rects]), image.shape)]
        boxes = found.bounding_boxes
        pick = nearest_to_centre((boxes[:, :2] + boxes[:, 2:]) / 2, image.shape)
        points = found.landmarks[pick].reshape(5, 2)
        if not rect.contains(dlib.point(*points[2].astype(int))):
            continue  # the two detectors found different faces
        shape = predictor(image, rect)
        transforms.append(dlib_chip_transform(dlib.get_face_chip_details(shape, SIZE, PADDING)))
        dlib_chips.append(dlib.get_face_chip(image, shape, SIZE, PADDING))
        mtcnn_points.append(points)
        images.append(image)
        people.append(path.parent.name)
        if n % 100 == 0:
            print(f"  {n}/{len(files)} images, {time.time() - start:.0f} s", flush=True)

    mapped = np.stack([transform_points(m, p) for m, p in zip(transforms, mtcnn_points, strict=True)])
    template = mapped.mean(axis=0).astype(np.float32)
    spread = np.linalg.norm(mapped - template, axis=2)
    print(f"\n{len(mapped)} faces used of {len(files)} images")
    print("per-landmark spread of MTCNN points in dlib's chips (px): median", np.median(spread, 0).round(2))

    # Sanity check of the transform itself: warping with M_i reproduces dlib's chip pixels.
    own = np.stack([cv2.warpAffine(im, m, (SIZE, SIZE)) for im, m in zip(images, transforms, strict=True)])
    pixel_gap = np.abs(own.astype(int) - np.stack(dlib_chips).astype(int))
    print(f"dlib's transform re-applied with OpenCV: mean |pixel difference| {pixel_gap.mean():.2f}")

    embedder = DlibResNetEmbedder()
    reference = embedder.embed(np.stack(dlib_chips))
    print("\nembedding distance, our chip vs dlib's chip of the same face (L2-normalised vectors):")
    print(f"{'template':<22}{'border':<10}{'mean':>8}{'median':>8}{'p95':>8}{'max':>8}")
    for name, tmpl in (("fitted now", template), ("in dlib_resnet.py", TEMPLATE)):
        for border_name, border in (("constant", cv2.BORDER_CONSTANT), ("replicate", cv2.BORDER_REPLICATE)):
            chips = np.stack(
                [
                    cv2.warpAffine(im, similarity_transform(p, tmpl), (SIZE, SIZE), borderMode=border)
                    for im, p in zip(images, mtcnn_points, strict=True)
                ]
            )
            d = np.linalg.norm(embedder.embed(chips) - reference, axis=1)
            print(
                f"{name:<22}{border_name:<10}{d.mean():8.4f}{np.median(d):8.4f}"
                f"{np.percentile(d, 95):8.4f}{d.max():8.4f}"
            )
    names = np.array(people)
    same = [
        np.linalg.norm(reference[i] - reference[j])
        for i in range(len(names))
        for j in range(i + 1, len(names))
        if names[i] == names[j]
    ]
    if same:
        print(f"for scale, dlib chips of the same person, different photos: median {np.median(same):.4f}")
    rows = ", ".join(f"[{x:.2f}, {y:.2f}]" for x, y in template)
    print(f"\nTEMPLATE = np.array(\n    [{rows}], dtype=np.float32\n)")


if __name__ == "__main__":
    main()
