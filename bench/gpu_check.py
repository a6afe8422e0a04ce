"""CPU vs CUDA for detection + embedding on real faces: one short prepared check for a machine with a GPU.

Runs the default pipeline (MTCNN detector on torch, dlib-resnet embedder on ONNX Runtime) over the same
real photos twice, each in a fresh process: once with ``FACEPRINT_DEVICE=cpu`` and once with
``FACEPRINT_DEVICE=cuda`` (``faceprint.models.device`` chooses the ONNX Runtime providers and the torch
device in one place). Prints which providers and torch device each run really used, images/s and faces/s
(after a warm-up), and how far the CUDA embeddings are from the CPU ones (they must be the same faces with
the same embeddings, to float rounding).

Needs a CUDA build: ``pip install onnxruntime-gpu`` (instead of onnxruntime) for the embedder and a CUDA
torch wheel for the detector; either one alone is used where present.

    python bench/gpu_check.py [--images 200] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def photos(n: int) -> list[Path]:
    """The first ``n`` LFW photos, people in name order (the same list in every run)."""
    root = DATA / "lfw" / "lfw-deepfunneled"
    return sorted(root.glob("*/*.jpg"))[:n]


def worker(n: int, batch: int, out: Path) -> None:
    """One run on the device FACEPRINT_DEVICE names: timings, providers and embeddings to ``out``."""
    import torch

    from faceprint import models
    from faceprint.analyzer import FaceAnalyzer

    paths = photos(n)
    analyzer = FaceAnalyzer()
    analyzer.analyze_batch(paths[:batch])  # warm-up: load the models, CUDA kernels, memory pools
    t0 = time.perf_counter()
    faces = []
    for lo in range(0, len(paths), batch):
        faces += analyzer.analyze_batch(paths[lo : lo + batch])
    seconds = time.perf_counter() - t0
    first = [f[0].embedding if f else np.zeros(128, np.float32) for f in faces]
    np.save(out.with_suffix(".npy"), np.stack(first))
    out.write_text(
        json.dumps(
            {
                "device": models.device(),
                "onnx_providers": models.onnx_providers(),
                "torch_device": models.torch_device(),
                "torch_cuda": torch.cuda.is_available(),
                "images": len(paths),
                "faces": sum(len(f) for f in faces),
                "seconds": seconds,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.images, args.batch, args.worker)
        return
    if not photos(1):
        raise SystemExit(f"no LFW photos under {DATA / 'lfw'} (set FACEPRINT_DATA)")
    results = {}
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    for dev in ("cpu", "cuda"):
        out = tmp / f"gpu_check_{dev}_{os.getpid()}.json"
        env = {**os.environ, "FACEPRINT_DEVICE": dev}
        cmd = [sys.executable, __file__, "--images", str(args.images), "--batch", str(args.batch)]
        run = subprocess.run([*cmd, "--worker", str(out)], env=env, capture_output=True, text=True)
        if run.returncode != 0:
            why = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"
            print(f"{dev}: failed: {why}")
            continue
        results[dev] = json.loads(out.read_text()), np.load(out.with_suffix(".npy"))
    print(f"{'device':<6} | {'ONNX Runtime providers':<44} | {'torch':<5} | {'images/s':>8} | {'faces/s':>7}")
    for dev, (info, _) in results.items():
        print(
            f"{dev:<6} | {','.join(info['onnx_providers']):<44} | {info['torch_device']:<5} | "
            f"{info['images'] / info['seconds']:8.1f} | {info['faces'] / info['seconds']:7.1f}"
        )
    if len(results) == 2:
        cpu, cuda = results["cpu"][1], results["cuda"][1]
        both = (np.linalg.norm(cpu, axis=1) > 0) & (np.linalg.norm(cuda, axis=1) > 0)
        gap = np.linalg.norm(cpu[both] - cuda[both], axis=1)
        print(
            f"embeddings, CUDA vs CPU (first face of {both.sum()} photos): max distance {gap.max():.2e}, "
            f"median {np.median(gap):.2e} (same-person threshold ~0.6: must be far below)"
        )
        print(f"speed-up: {results['cpu'][0]['seconds'] / results['cuda'][0]['seconds']:.1f}x")


if __name__ == "__main__":
    main()
