"""Detection speed: faceprint's MTCNN vs independent MTCNNs on the same frames, in one run.

Frames: a 640x480 photo (centre crop of face_recognition's obama-480p.jpg; every detector finds two
faces in it) and one 1920x1080 frame of facenet-pytorch's crowd video. Every detector runs in its own
subprocess (so its peak RSS is its own) with the same thread budget and MTCNN settings (min face 20,
thresholds 0.6/0.7/0.7, factor 0.709): faceprint, faceie (NumPy MTCNN, same venv), the mtcnn package's
own TensorFlow MTCNN (the weights' origin and the parity oracle; when TensorFlow is installed) and, with
--anchor-python, facenet-pytorch's MTCNN in another interpreter. faceprint and the anchor take turns,
--rounds times. Prints: detector, frame, faces, ms/frame (median wall clock), speed-up over the anchor,
CPU ms/frame (all threads; steadier than wall clock on a busy machine), peak RSS of the process (after
loading, in brackets), and how well its boxes agree with the anchor's (and with the mtcnn package's).

    python bench/bench_detect.py [--anchor-python /work/venv-fnp/bin/python] [--threads 2] [--rounds 3]
        [--repeat 10] [--no-references]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PHOTO = DATA / "faces" / "face_recognition" / "examples" / "obama-480p.jpg"
VIDEO = DATA / "faces" / "facenet_pytorch" / "examples" / "video.mp4"
MIN_FACE, THRESHOLDS, FACTOR = 20, (0.6, 0.7, 0.7), 0.709


def make_frames(video_frame: int) -> dict[str, np.ndarray]:
    import cv2

    photo = cv2.imread(str(PHOTO))
    if photo is None:
        sys.exit(f"cannot read {PHOTO}")
    x0 = (photo.shape[1] - 640) // 2  # 853x480 -> centre 640x480 (the face is near the centre)
    frames = {"photo 640x480": np.ascontiguousarray(photo[:480, x0 : x0 + 640, ::-1])}
    cap = cv2.VideoCapture(str(VIDEO))
    cap.set(cv2.CAP_PROP_POS_FRAMES, video_frame)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        sys.exit(f"cannot read frame {video_frame} of {VIDEO}")
    frames[f"crowd 1920x1080 #{video_frame}"] = np.ascontiguousarray(frame[:, :, ::-1])
    return frames


# ---- workers: each runs in its own process and prints one JSON object --------------------------------


def _faceprint(threads: int):
    import cv2

    from faceprint.detection.mtcnn import MTCNNDetector

    cv2.setNumThreads(threads)
    # The cascade the other MTCNNs run: no phantom filter (its cost and effect: bench/bench_phantoms.py).
    det = MTCNNDetector(
        min_face_size=MIN_FACE, thresholds=THRESHOLDS, factor=FACTOR, threads=threads, phantom_filter=False
    )

    def run(image: np.ndarray) -> list[list[float]]:
        return [list(d.box) for d in det.detect(image)]

    return run


def _faceie(threads: int):
    from faceie.mtcnn import detect_faces
    from PIL import Image

    def run(image: np.ndarray) -> list[list[float]]:
        out = detect_faces(
            Image.fromarray(image),
            pyramid_downscale_factor=1 / FACTOR,
            rotations=np.array([0.0]),
            proposal_skip_downscale_factor=MIN_FACE / 12,
            proposal_probability_threshold=THRESHOLDS[0],
            refine_probability_threshold=THRESHOLDS[1],
            output_probability_threshold=THRESHOLDS[2],
            proposal_maximum_iou=0.5,
            refine_maximum_iou=0.7,
            output_maximum_iou=0.7,
            extract_images=None,
        )
        # inclusive pixel corners -> continuous coordinates
        return [[x1, y1, x2 + 1, y2 + 1] for x1, y1, x2, y2 in out.bounding_boxes.tolist()]

    return run


def _facenet_pytorch(threads: int):
    import torch
    from facenet_pytorch import MTCNN

    torch.set_num_threads(threads)
    mtcnn = MTCNN(min_face_size=MIN_FACE, thresholds=list(THRESHOLDS), factor=FACTOR, keep_all=True)

    def run(image: np.ndarray) -> list[list[float]]:
        boxes, _ = mtcnn.detect(image)
        return [] if boxes is None else np.asarray(boxes, dtype=np.float64).tolist()

    return run


def _mtcnn_package(threads: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    from mtcnn import MTCNN

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = MTCNN()
    p, r, o = THRESHOLDS
    knobs = {"min_face_size": MIN_FACE, "scale_factor": FACTOR}
    knobs |= {"threshold_pnet": p, "threshold_rnet": r, "threshold_onet": o}

    def run(image: np.ndarray) -> list[list[float]]:
        rows = model.detect_faces(image, box_format="xyxy", output_type="numpy", fit_to_image=False, **knobs)
        return np.asarray(rows, dtype=np.float64).reshape(-1, 16)[:, 1:5].tolist()

    return run


WORKERS = {
    "faceprint": _faceprint,
    "faceie": _faceie,
    "facenet-pytorch": _facenet_pytorch,
    "mtcnn (TensorFlow)": _mtcnn_package,
}


def worker(name: str, frames_path: str, threads: int, repeat: int) -> None:
    with np.load(frames_path, allow_pickle=False) as npz:
        frames = {k: npz[k] for k in npz.files}
    run = WORKERS[name](threads)
    run(frames[next(iter(frames))])  # load weights, warm caches
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results = {}
    for label, image in frames.items():
        boxes = run(image)  # warm-up at this size
        times, cpu = [], []
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            boxes = run(image)
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        results[label] = {"times": times, "cpu": cpu, "boxes": boxes}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"results": results, "rss_loaded_mib": rss_loaded, "peak_rss_mib": peak}))


# ---- driver -------------------------------------------------------------------------------------------


def iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def agreement(boxes: list[list[float]], anchor: list[list[float]]) -> str:
    """Greedy one-to-one matching at IoU >= 0.5: 'matched/anchor faces, mean IoU of the matches'."""
    pairs = sorted(
        ((iou(a, b), i, j) for i, a in enumerate(boxes) for j, b in enumerate(anchor)), reverse=True
    )
    used_i, used_j, ious = set(), set(), []
    for v, i, j in pairs:
        if v >= 0.5 and i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            ious.append(v)
    return f"{len(ious)}/{len(anchor)} IoU {np.mean(ious):.3f}" if ious else f"0/{len(anchor)}"


def merge(parts: list[dict]) -> dict:
    """One detector's rounds as one run: medians over every timed run, the highest memory peak."""
    results = {}
    for label in parts[0]["results"]:
        per = [p["results"][label] for p in parts]
        results[label] = {
            "ms": statistics.median(t for r in per for t in r["times"]),
            "cpu_ms": statistics.median(c for r in per for c in r["cpu"]),
            "boxes": per[-1]["boxes"],
        }
    return {
        "results": results,
        "rss_loaded_mib": max(p["rss_loaded_mib"] for p in parts),
        "peak_rss_mib": max(p["peak_rss_mib"] for p in parts),
    }


def spawn(python: str, name: str, frames_path: str, threads: int, repeat: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    # Each detector waits the way its library does by default. PyTorch's OpenMP threads busy-wait between
    # ops, which made facenet-pytorch 1.45x faster here on a quiet machine than with sleeping threads
    # (an earlier version of this benchmark imposed those on everyone) and several-fold slower on a busy
    # one: run this on a quiet machine. faceprint sets sleeping threads for itself; its detector runs
    # each op on one thread, so the policy does not touch its timings.
    env.pop("OMP_WAIT_POLICY", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH", "")]
    )
    cmd = [python, __file__, "--worker", name, "--frames", frames_path]
    cmd += ["--threads", str(threads), "--repeat", str(repeat)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anchor-python", help="interpreter with facenet-pytorch installed (the speed anchor)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10, help="timed runs per frame and round")
    ap.add_argument(
        "--rounds", type=int, default=3, help="turns faceprint and the anchor take (median of all)"
    )
    ap.add_argument("--no-references", action="store_true", help="skip faceie and the mtcnn package")
    ap.add_argument("--faceie-repeat", type=int, default=1, help="faceie is slow NumPy: fewer runs")
    ap.add_argument("--video-frame", type=int, default=0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--frames", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.no_references and not args.anchor_python:
        ap.error("--no-references leaves nothing to compare with: give --anchor-python too")
    if args.worker:
        worker(args.worker, args.frames, args.threads, args.repeat)
        return

    frames = make_frames(args.video_frame)
    with tempfile.TemporaryDirectory() as tmp:
        frames_path = str(Path(tmp) / "frames.npz")
        np.savez(frames_path, **frames)
        # faceprint and the anchor take turns, --rounds times, so that both see the same drift of this
        # shared machine's speed; their times are the medians over all rounds' runs.
        contenders = {"faceprint": sys.executable}
        if args.anchor_python:
            contenders["facenet-pytorch"] = args.anchor_python
        rounds: dict[str, list[dict]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, python in contenders.items():
                rounds[name].append(spawn(python, name, frames_path, args.threads, args.repeat))
        runs = {name: merge(parts) for name, parts in rounds.items()}
        if not args.no_references:
            runs["faceie"] = merge(
                [spawn(sys.executable, "faceie", frames_path, args.threads, args.faceie_repeat)]
            )
            if importlib.util.find_spec("tensorflow") and importlib.util.find_spec("mtcnn"):
                name = "mtcnn (TensorFlow)"
                runs[name] = merge([spawn(sys.executable, name, frames_path, args.threads, args.repeat)])

    anchor = "facenet-pytorch" if "facenet-pytorch" in runs else "faceie"
    print(
        f"threads={args.threads}, rounds={args.rounds} x repeat={args.repeat} (references once; faceie "
        f"repeat {args.faceie_repeat}), anchor: {anchor}"
    )
    header = ["detector", "frame", "faces", "ms/frame", "speed-up", "CPU ms/frame", "peak RSS MiB"]
    oracle = "mtcnn (TensorFlow)" if "mtcnn (TensorFlow)" in runs else None
    header.append(f"boxes vs {anchor}")
    if oracle:
        header.append("boxes vs mtcnn (TF)")
    rows = []
    for label in frames:
        ref = runs[anchor]["results"][label]
        for name, run in runs.items():
            res = run["results"][label]
            rows.append(
                [
                    name,
                    label,
                    str(len(res["boxes"])),
                    f"{res['ms']:.1f}",
                    f"{ref['ms'] / res['ms']:.2f}x",
                    f"{res['cpu_ms']:.0f}",
                    f"{run['peak_rss_mib']:.0f} (loaded {run['rss_loaded_mib']:.0f})",
                    agreement(res["boxes"], ref["boxes"]),
                ]
            )
            if oracle:
                rows[-1].append(agreement(res["boxes"], runs[oracle]["results"][label]["boxes"]))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
