"""Reproduce the built-in threshold and confidence calibration of an embedder (faceprint.thresholds).

Embeds LFW deep-funneled with the default pipeline (through the evaluation cache), forms every pair of
images with a detected face (same person, at most 300 per person; different people, a 2M sample), and
prints:
- the threshold at FAR = 1%, 0.1% (the default target) and 0.01% with the TAR it keeps, the EER and the
  best-accuracy threshold (shared ROC arithmetic in faceprint.evaluation.metrics);
- the class-balanced logistic P(same | distance) the confidence uses;
- the ``Calibration(...)`` entry to paste into ``BUILTIN``, keyed by the embedder's name and version
  (``--emb`` options such as test-time views make other versions; with ``--npz`` give ``--version``).

    python bench/calibrate_thresholds.py [--every N] [--embedder dlib-resnet] [--emb flip=true --emb jitter=8]
    python bench/calibrate_thresholds.py --npz lfw_embeddings.npz   # precomputed: paths, embeddings, found
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from provenance import pipeline_cache

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def pairs(vectors: np.ndarray, labels: np.ndarray, max_diff: int, max_same: int, seed: int = 0):
    """Distances and same-person flags: same-person pairs (at most ``max_same`` per person, drawn at
    random, so that George W. Bush's 140k pairs do not outweigh everyone else), and every different-person
    pair or a uniform sample of ``max_diff`` of them (all LFW pairs would need ~90M distances)."""
    rng = np.random.default_rng(seed)
    same_i, same_j = [], []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        a, b = np.triu_indices(len(idx), k=1)
        if len(a) > max_same:
            pick = rng.choice(len(a), max_same, replace=False)
            a, b = a[pick], b[pick]
        same_i.append(idx[a])
        same_j.append(idx[b])
    si, sj = np.concatenate(same_i), np.concatenate(same_j)
    n = len(labels)
    if n * (n - 1) // 2 - len(si) <= max_diff:
        di, dj = np.triu_indices(n, k=1)
    else:
        di, dj = rng.integers(0, n, (2, int(max_diff * 1.2)))
    keep = labels[di] != labels[dj]
    di, dj = di[keep][:max_diff], dj[keep][:max_diff]
    i, j = np.r_[si, di], np.r_[sj, dj]
    d = np.sqrt(np.clip(2.0 - 2.0 * np.einsum("ij,ij->i", vectors[i], vectors[j]), 0.0, None))
    return d, labels[i] == labels[j]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--every", type=int, default=1, help="keep every N-th LFW person (sorted by name)")
    parser.add_argument("--embedder", default="dlib-resnet")
    parser.add_argument(
        "--emb", action="append", default=[], metavar="KEY=VALUE", help="embedder option (JSON value)"
    )
    parser.add_argument("--far", type=float, default=1e-3, help="FAR target of the default threshold")
    parser.add_argument("--max-diff", type=int, default=2_000_000, help="different-person pairs sampled")
    parser.add_argument("--max-same", type=int, default=300, help="same-person pairs per person, at most")
    parser.add_argument("--npz", type=Path, help="precomputed LFW embeddings (keys paths, embeddings, found)")
    parser.add_argument("--version", default="", help="with --npz: the embedder version that made them")
    args = parser.parse_args()
    options = {}
    for item in args.emb:
        key, eq, value = item.partition("=")
        if not eq:
            parser.error(f"--emb {item!r} is not KEY=VALUE")
        options[key] = json.loads(value)
    if options and args.npz is not None:
        parser.error("--emb needs the embeddings computed here, not --npz")
    name, version = args.embedder, args.version

    from faceprint.evaluation.calibration import fit_calibration
    from faceprint.evaluation.metrics import best_threshold, eer, threshold_at_far
    from faceprint.evaluation.runner import EmbeddingRunner, PipelineConfig
    from faceprint.io import labelled_images

    if args.npz is not None:
        with np.load(args.npz, allow_pickle=False) as z:
            rel, vectors, found = z["paths"], z["embeddings"], z["found"]
        names = sorted({str(p).split("/")[0] for p in rel})[:: args.every]
        keep = np.isin([str(p).split("/")[0] for p in rel], names) & found
        vectors, labels = vectors[keep], np.array([str(p).split("/")[0] for p in rel[keep]])
        origin = f"{args.npz.name}"
    else:
        root = DATA / "lfw" / "lfw-deepfunneled"
        people = labelled_images(root)
        names = list(people)[:: args.every]
        paths = [p for n in names for p in people[n]]
        all_labels = np.array([n for n in names for _ in people[n]])
        config = PipelineConfig(embedder=args.embedder, embedder_options=tuple(sorted(options.items())))
        runner = EmbeddingRunner(config, cache=pipeline_cache())
        run = runner.embed_paths(paths)
        vectors, labels = run.vectors[run.found], all_labels[run.found]
        origin = "default pipeline" + "".join(f", {k}={v}" for k, v in sorted(options.items()))
        version = runner.analyzer.embedder.version
    d, same = pairs(vectors, labels, args.max_diff, args.max_same)
    source = (
        f"LFW deep-funneled ({origin}), every {args.every} person(s): {len(vectors)} images with a face; "
        f"{same.sum():,} same-person / {(~same).sum():,} different-person pairs"
    )
    print(source)
    print(f"{'operating point':<22} | {'threshold':>9} | {'FAR':>8} | {'TAR':>8}")
    for far in (1e-2, 1e-3, 1e-4):
        p = threshold_at_far(d, same, far)
        print(f"{'FAR <= ' + format(far, 'g'):<22} | {p.threshold:9.4f} | {p.far:8.4%} | {p.tar:8.4%}")
    e = eer(d, same)
    print(f"{'equal error rate':<22} | {e.threshold:9.4f} | {e.rate:8.4%} | {1 - e.rate:8.4%}")
    b = best_threshold(d, same)
    print(
        f"{'best accuracy (pairs)':<22} | {b.threshold:9.4f} | accuracy {b.accuracy:.4%} (unbalanced pairs)"
    )
    cal = fit_calibration(d, same, embedder=name, version=version, target_far=args.far, source=source)
    print(f"confidence: P(same) = 1 / (1 + exp({cal.slope:.3f} * (d - {cal.threshold:.4f})))")
    print(f"\n    EmbedderKey({name!r}, {version!r}): {cal!r},")


if __name__ == "__main__":
    main()
