"""Fit the dlib-resnet alignment template so that our chips match dlib's own ``get_face_chip``.

How: for each of N LFW images, dlib's pipeline (HOG detector, 5-point shape predictor,
``get_face_chip_details(size=150, padding=0.25)``) gives the exact image->chip transform M_i that dlib uses
(the affine map taking the rotated corners of the chip rectangle to the chip's corner pixels, as dlib's
``get_mapping_to_chip`` does); faceprint's MTCNN finds the five landmarks p_i of the same face. The
template T minimising sum_i ||M_i(p_i) - T||^2 is the mean of the mapped landmarks M_i(p_i): where
MTCNN's points sit, on average, in dlib's chips.

Check: each face is then aligned our way (least-squares similarity p_i -> T, bilinear warp) and the
chip's embedding is compared with the embedding of dlib's chip of the same face (distance between
L2-normalised vectors), next to the distances between different images of the same person for scale.
Prints the template to paste into src/faceprint/embedding/dlib_resnet.py.

    nice -n 10 python bench/fit_dlib_template.py --faces 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from faceprint.alignment import align_face, similarity_transform, transform_points
from faceprint.detection.mtcnn import MTCNNDetector
from faceprint.embedding.dlib_resnet import TEMPLATE, DlibResNetEmbedder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # dlib's chips: the oracle the tests pin the alignment to
from dlib_chips import SIZE, DlibChipper, nearest_to_centre  # noqa: E402

LFW = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data")) / "lfw" / "lfw-deepfunneled"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=1000)
    parser.add_argument("--lfw", type=Path, default=LFW)
    args = parser.parse_args()

    chipper = DlibChipper()
    mtcnn = MTCNNDetector()
    files = sorted(args.lfw.glob("*/*.jpg"))
    files = [files[i] for i in np.linspace(0, len(files) - 1, args.faces).astype(int)]

    people, images, mtcnn_points, transforms, dlib_chips = [], [], [], [], []
    start = time.time()
    for n, path in enumerate(files):
        image = np.asarray(Image.open(path).convert("RGB"))
        dlib_face, found = chipper(image), mtcnn.detect(image)
        if dlib_face is None or not found:
            continue
        boxes = np.array([d.box for d in found])
        points = found[nearest_to_centre((boxes[:, :2] + boxes[:, 2:]) / 2, image.shape)].landmarks
        x1, y1, x2, y2 = dlib_face.box
        if not (x1 <= points[2, 0] <= x2 and y1 <= points[2, 1] <= y2):
            continue  # the two detectors found different faces
        transforms.append(dlib_face.transform)
        dlib_chips.append(dlib_face.chip)
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

    # Geometry: where a point of dlib's chip lands in ours (5x5 grid over the chip), in chip pixels.
    grid = np.stack(np.meshgrid(np.linspace(0, SIZE - 1, 5), np.linspace(0, SIZE - 1, 5)), -1).reshape(-1, 2)
    shift = [
        np.linalg.norm(
            transform_points(
                similarity_transform(p, template), transform_points(cv2.invertAffineTransform(m), grid)
            )
            - grid,
            axis=1,
        ).mean()
        for p, m in zip(mtcnn_points, transforms, strict=True)
    ]
    p95 = np.percentile(shift, 95)
    print(f"a point of dlib's chip in ours: mean shift {np.mean(shift):.2f} px, p95 {p95:.2f}")

    embedder = DlibResNetEmbedder()
    reference = embedder.embed(np.stack(dlib_chips))
    rows = {
        "dlib's transform, OpenCV warp": own,
        "fitted template": [
            align_face(im, p, template, SIZE) for im, p in zip(images, mtcnn_points, strict=True)
        ],
        "fitted, border replicate": [
            cv2.warpAffine(
                im, similarity_transform(p, template), (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE
            )
            for im, p in zip(images, mtcnn_points, strict=True)
        ],
        "TEMPLATE in dlib_resnet.py": [
            align_face(im, p, TEMPLATE, SIZE) for im, p in zip(images, mtcnn_points, strict=True)
        ],
    }
    print("\nembedding distance to dlib's own chip of the same face (L2-normalised vectors):")
    print(f"{'chips':<32}{'mean':>8}{'median':>8}{'p95':>8}{'max':>8}")
    for name, chips in rows.items():
        d = np.linalg.norm(embedder.embed(np.stack(chips)) - reference, axis=1)
        print(f"{name:<32}{d.mean():8.4f}{np.median(d):8.4f}{np.percentile(d, 95):8.4f}{d.max():8.4f}")
    names = np.array(people)
    same = [
        np.linalg.norm(reference[i] - reference[j])
        for i in range(len(names))
        for j in range(i + 1, len(names))
        if names[i] == names[j]
    ]
    if same:
        print(f"for scale, dlib chips of the same person, different photos: median {np.median(same):.4f}")
    points = ", ".join(f"[{x:.2f}, {y:.2f}]" for x, y in template)
    print(f"\nTEMPLATE = np.array(\n    [{points}], dtype=np.float32\n)")


if __name__ == "__main__":
    main()
