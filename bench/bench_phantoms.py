"""False faces and faces lost, MTCNN's phantom filter off (the mtcnn package's cascade) and on (the
default), in one run on the same images.

Sets: every photo of the faces folder (the stills), every 5th frame of the crowd video
(facenet_pytorch/examples/video.mp4, 1920x1080) and every 13th LFW deep-funneled image (1,018 images).
What is a false face comes from bench/phantom_labels.json: the filter-off detections that are no face,
labelled by looking at each crop; every other filter-off detection of these images is a real face. LFW's
labelled face is the subject face the evaluation picks (faceprint.evaluation.runner.subject_face: the
largest face near the centre, from the filter-off detections): "LFW faces lost" counts images where the
filter drops it.

Columns: images; detections; false faces (labelled phantoms still reported) and per image; real faces
lost (filter-off real faces the filter drops); detection time (ms per image, median of the set; on a
shared machine the off/on difference is what counts).

    nice -n 10 python bench/bench_phantoms.py [--lfw-step 13] [--crowd-step 5] [--show-dropped DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data"))
FACES = DATA / "faces"
LFW = DATA / "lfw" / "lfw-deepfunneled"
CROWD = FACES / "facenet_pytorch" / "examples" / "video.mp4"
LABELS = Path(__file__).resolve().parent / "phantom_labels.json"


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def stills() -> Iterator[tuple[str, np.ndarray]]:
    from faceprint.io import load_image

    for path in sorted(p for p in FACES.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}):
        yield path.relative_to(FACES).as_posix(), load_image(path)


def crowd(step: int) -> Iterator[tuple[str, np.ndarray]]:
    cap = cv2.VideoCapture(str(CROWD))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    for f in range(0, frames, step):
        cap.set(cv2.CAP_PROP_POS_FRAMES, f)
        ok, frame = cap.read()
        if ok:
            yield f"frame{f}", np.ascontiguousarray(frame[:, :, ::-1])
    cap.release()


def lfw(step: int) -> Iterator[tuple[str, np.ndarray]]:
    from faceprint.io import load_image

    for path in sorted(LFW.glob("*/*.jpg"))[::step]:
        yield path.name, load_image(path)


def overlaps(det, boxes) -> bool:
    return any(iou(det.box, b) > 0.5 for b in boxes)


def subject(dets, shape) -> int | None:
    """Index of the evaluation's subject face among ``dets`` (faceprint.evaluation.runner's rule)."""
    from faceprint.evaluation.cache import Detections
    from faceprint.evaluation.runner import subject_face

    chosen = subject_face(Detections(shape[:2], list(dets)))
    return None if chosen is None else next(i for i, d in enumerate(dets) if d is chosen)


def measure(name: str, images, labels: dict, off, on, show: Path | None) -> list[str]:
    n = false_off = false_on = dets_off = dets_on = lost = subjects_lost = 0
    t_off, t_on = [], []
    for key, image in images:
        n += 1
        start = time.perf_counter()
        everything = off.detect(image)
        t_off.append(time.perf_counter() - start)
        start = time.perf_counter()
        kept = on.detect(image)
        t_on.append(time.perf_counter() - start)
        phantom_boxes = labels.get(key, [])
        dets_off += len(everything)
        dets_on += len(kept)

        phantom = [overlaps(d, phantom_boxes) for d in everything]
        survived = [overlaps(d, [k.box for k in kept]) for d in everything]
        false_off += sum(phantom)
        false_on += sum(overlaps(k, phantom_boxes) for k in kept)
        dropped = [(d, p) for d, p, s in zip(everything, phantom, survived, strict=True) if not s]
        lost += sum(not p for _, p in dropped)
        if name == "LFW":
            s = subject(everything, image.shape)
            subjects_lost += s is not None and not survived[s]
        if show is not None:
            for i, (d, p) in enumerate(dropped):
                x1, y1, x2, y2 = (round(v) for v in d.box)
                crop = image[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)]
                if crop.size:
                    tag = "phantom" if p else "REAL"
                    out = show / f"{name}-{key.replace('/', '_')}-{i}-{tag}.png"
                    cv2.imwrite(str(out), cv2.resize(crop[:, :, ::-1], (96, 96)))
    ms_off, ms_on = 1000 * statistics.median(t_off), 1000 * statistics.median(t_on)
    return [
        name,
        str(n),
        f"{dets_off} -> {dets_on}",
        f"{false_off} -> {false_on}",
        f"{false_off / n:.3f} -> {false_on / n:.3f}",
        f"{lost}" + (f" (subject faces: {subjects_lost})" if name == "LFW" else ""),
        f"{ms_off:.0f} -> {ms_on:.0f}",
    ]


def main() -> None:
    from faceprint.detection.mtcnn import MTCNNDetector
    from faceprint.evaluation.report import text_table

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw-step", type=int, default=13, help="every Nth LFW image (sorted paths)")
    parser.add_argument("--crowd-step", type=int, default=5, help="every Nth frame of the crowd video")
    parser.add_argument("--show-dropped", type=Path, help="write the crops the filter drops here")
    args = parser.parse_args()
    for need in (FACES, LFW, CROWD):
        if not need.exists():
            sys.exit(f"{need}: missing (set FACEPRINT_DATA)")
    if args.show_dropped:
        args.show_dropped.mkdir(parents=True, exist_ok=True)
    labels = json.loads(LABELS.read_text())
    if (args.lfw_step, args.crowd_step) != (13, 5):
        print("note: the labels cover every 13th LFW image and every 5th crowd frame; others count as real")
    off, on = MTCNNDetector(phantom_filter=False), MTCNNDetector()
    rows = [
        measure("stills", stills(), labels["stills"], off, on, args.show_dropped),
        measure("crowd video", crowd(args.crowd_step), labels["crowd"], off, on, args.show_dropped),
        measure("LFW", lfw(args.lfw_step), labels["lfw"], off, on, args.show_dropped),
    ]
    print(f"MTCNN {on.version}, phantom_filter off -> on (min face {on.min_face_size:g} px, default knobs)")
    header = ["set", "images", "detections", "false faces", "false per image", "real lost", "ms/image"]
    print(text_table(header, rows))


if __name__ == "__main__":
    main()
