"""How FULL_SHARPNESS (faceprint.quality) was chosen when sharpness moved to one scale.

The video score used to measure a detection's box crop resampled to 64x64 (Laplacian in float32) and
count 150 as fully sharp. On the one scale (faceprint.quality.sharpness: the crop resampled to 150 px),
this prints, for each candidate value F, how far min(1, sharpness / F) is from the former term (RMS) and
how often both agree on "fully sharp", over LFW faces at 0.5x, 1x and 2x size (about 45, 90 and 180 px),
sharp and Gaussian-blurred (sigma 1 and 2 px at 1x).

    PYTHONPATH=src python bench/fit_video_sharpness.py [--images 200]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from faceprint import quality
from faceprint.analyzer import FaceAnalyzer
from faceprint.io import load_image

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
LFW = DATA / "lfw" / "lfw-deepfunneled"
FORMER_FULL = 150.0


def former_sharpness(crop: np.ndarray) -> float:
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(cv2.resize(grey, (64, 64)), cv2.CV_32F).var())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    fa = FaceAnalyzer()
    rows = []
    for path in sorted(LFW.glob("*/*_0001.jpg"))[::12][: args.images]:
        image = load_image(path)
        found = fa.detect(image)
        if not found:
            continue
        for scale in (0.5, 1.0, 2.0):
            how = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            scaled = cv2.resize(image, None, fx=scale, fy=scale, interpolation=how)
            box = tuple(v * scale for v in found[0].box)
            for sigma in (0.0, 1.0, 2.0):
                shown = cv2.GaussianBlur(scaled, (0, 0), sigma * scale) if sigma else scaled
                crop = quality.box_crop(shown, box)
                if crop is not None:
                    rows.append((scale, former_sharpness(crop), quality.sharpness(crop)))
    r = np.array(rows)
    former, new = r[:, 1], r[:, 2]
    target = np.minimum(1, former / FORMER_FULL)
    print(f"{len(r)} face crops\n\n| F | RMS of the term | agree on fully sharp | RMS at 0.5x | 1x | 2x |")
    print("|---|---|---|---|---|---|")
    for full in (6, 8, 9, 10, 11, 12, 14, 16, 20):
        d = np.minimum(1, new / full) - target
        by_scale = " | ".join(f"{np.sqrt(np.mean(d[r[:, 0] == s] ** 2)):.3f}" for s in (0.5, 1.0, 2.0))
        agree = np.mean((former >= FORMER_FULL) == (new >= full))
        print(f"| {full} | {np.sqrt(np.mean(d**2)):.3f} | {agree:.3f} | {by_scale} |")


if __name__ == "__main__":
    main()
