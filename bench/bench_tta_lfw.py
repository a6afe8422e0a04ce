"""Test-time augmentation of the dlib ResNet on LFW (pairs.txt, 10 folds, full pipeline): single view (the
anchor, today's default), flip, and flip + N jittered views, in one run.

Every view of every image is embedded once (the jitter set is nested: N views are the first N of a longer
run), through the evaluation runner and its cache (detections are reused); each setting then averages its
views' raw descriptors exactly as ``DlibResNetEmbedder(flip=..., jitter=...).embed`` does, which the run
checks on real chips before printing. Times: ``embed()`` per face at batch 32 and batch 1.

    nice -n 10 python bench/bench_tta_lfw.py [--cache-file F.sqlite] [--jitter 2 4 8 16] [--threads 2]

The cache file gets one entry per image holding all its views (~17 KB each), so a rerun is instant.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from provenance import pipeline_cache

from faceprint.alignment import align_faces
from faceprint.analyzer import FaceAnalyzer
from faceprint.embedding.dlib_resnet import DlibResNetEmbedder
from faceprint.evaluation.cache import EmbeddingCache
from faceprint.evaluation.metrics import confusion_at
from faceprint.evaluation.pairs import read_lfw_pairs
from faceprint.evaluation.protocols import pair_metrics
from faceprint.evaluation.report import text_table
from faceprint.evaluation.runner import EmbeddingRunner, PipelineConfig
from faceprint.io import load_image
from faceprint.thresholds import builtin_calibration
from faceprint.types import EmbedderKey

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data"))


class AllViews:
    """An embedder whose "embedding" is the raw descriptor of every view of the chip, side by side (in
    ``view_images`` order), so that the runner and its cache carry them."""

    name = "dlib-resnet"

    def __init__(self, inner: DlibResNetEmbedder) -> None:
        self.inner = inner
        self.version = f"all-views:{inner.version}"
        self.input_size, self.threshold = inner.input_size, inner.threshold
        self.dim = inner.dim * inner.views

    def template(self) -> np.ndarray:
        return self.inner.template()

    def embed(self, chips: np.ndarray) -> np.ndarray:
        views = self.inner.view_images(chips)
        raw = self.inner.embed_raw(views.reshape(-1, *chips.shape[1:]))
        return raw.reshape(len(views), len(chips), -1).transpose(1, 0, 2).reshape(len(chips), -1)


def select(raw: np.ndarray, most: int, flip: bool, jitter: int) -> np.ndarray:
    """Mean of one setting's views from (N, V, 128) all-views descriptors, L2-normalised."""
    idx = list(range(jitter + 1))
    if flip:
        idx += [most + 1 + i for i in idx]
    mean = raw[:, idx].mean(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def per_face_ms(embedder: DlibResNetEmbedder, chips: np.ndarray, batch: int, reps: int) -> float:
    embedder.embed(chips[:batch])  # warm-up (loads the network)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for i in range(0, len(chips), batch):
            embedder.embed(chips[i : i + batch])
        times.append((time.perf_counter() - start) / len(chips))
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, default=DATA / "lfw" / "protocol" / "pairs.txt")
    ap.add_argument("--images", type=Path, default=DATA / "lfw" / "lfw-deepfunneled")
    ap.add_argument(
        "--cache-file",
        type=Path,
        help="evaluation cache (default: one keyed by the pipeline's code and library versions)",
    )
    ap.add_argument("--jitter", type=int, nargs="+", default=[2, 4, 8, 16], help="jittered views to try")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="timing repetitions (median)")
    args = ap.parse_args()

    most = max(args.jitter)
    pairs = read_lfw_pairs(args.pairs, args.images)
    # The views wrapper below is part of what the cache holds: its code keys the cache too.
    own_code = {"bench/bench_tta_lfw.py": Path(__file__)}
    cache = EmbeddingCache(args.cache_file) if args.cache_file else pipeline_cache(own_code)
    runner = EmbeddingRunner(PipelineConfig(label="all views"), cache=cache)
    recorder = AllViews(DlibResNetEmbedder(threads=args.threads, flip=True, jitter=most))
    runner.analyzer = FaceAnalyzer(runner.analyzer.detector, recorder)
    run = runner.embed_paths(pairs.images)
    raw = run.vectors.reshape(len(run.vectors), 2 * (most + 1), -1)
    print(f"{args.pairs} ({len(pairs)} pairs), {len(raw)} images, {int((~run.found).sum())} without a face;")
    print(f"views embedded now for {run.embedded} images in {run.seconds:.0f} s\n")

    # Timing chips: the first 32 images' faces, aligned as the run aligned them.
    template = recorder.template()
    chips = np.concatenate(
        [
            align_faces(load_image(p), [m], template, recorder.input_size)
            for p, m in zip(pairs.images[:32], run.landmarks[:32], strict=True)
        ]
    )
    settings = [(False, 0), (True, 0)] + [(True, n) for n in sorted(args.jitter)]
    rows = []
    for flip, jitter in settings:
        embedder = DlibResNetEmbedder(threads=args.threads, flip=flip, jitter=jitter)
        vectors = select(raw, most, flip, jitter)
        by_image = dict(zip(pairs.images, vectors, strict=True))
        m = pair_metrics(pairs, by_image)
        point = {p.target_far: p for p in m.tar_at_far}.get(1e-3)
        # What the threshold the recognizer would use for this version does on these pairs.
        cal = builtin_calibration(EmbedderKey.of(embedder))
        c = confusion_at(pairs.distances(by_image), pairs.same, cal.threshold)
        far_tar = f"{c.false_accepts / (c.false_accepts + c.true_rejects):.4f} / "
        far_tar += f"{c.true_accepts / (c.true_accepts + c.false_rejects):.4f}"
        # The shortcut above must be what the embedder itself computes.
        check = select(recorder.embed(chips).reshape(len(chips), raw.shape[1], -1), most, flip, jitter)
        gap = float(np.abs(embedder.embed(chips) - check).max())
        if gap > 1e-5:
            raise SystemExit(f"{embedder.version}: view selection differs from embed() by {gap:.2g}")
        timing = [f"{per_face_ms(embedder, chips, b, args.reps):.1f}" for b in (32, 1)]
        rows.append(
            [
                embedder.version,
                str(embedder.views),
                f"{m.folded.mean:.4f} ± {m.folded.std:.4f}" if m.folded else "-",
                f"{m.roc.auc:.5f}",
                f"{m.eer.rate:.4f}",
                f"{point.tar:.4f}" if point else "refused",
                f"{point.threshold:.4f}" if point else "-",
                f"{cal.threshold:.4f}: {far_tar}",
                *timing,
            ]
        )
    header = ["version", "views", "accuracy (k-fold)", "AUC", "EER", "TAR@1e-3", "d@FAR1e-3"]
    header.append("built-in thr: FAR / TAR")
    print(text_table([*header, "ms/face b32", "ms/face b1"], rows))
    print(f"(first row: the single-view anchor; {args.threads} threads, median of {args.reps})")


if __name__ == "__main__":
    main()
