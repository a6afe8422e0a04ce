"""dlib-resnet, facenet and their fusion on LFW, from one run of the fusion pipeline (MTCNN, then each
network on its own chip of the same face, each with its mirror image): the fusion embedder's vector is
``[sqrt(w) a, sqrt(1 - w) b]``, so the two networks' own embeddings are its halves, exactly what the
``dlib-resnet`` and ``facenet`` embedders give on those faces.

    python bench/bench_fusion_lfw.py view1 [--npz-dir DIR]   # choices, on View 1 only
    python bench/bench_fusion_lfw.py pairs [--anchor]        # the report: pairs.txt, 10 folds

``view1``: the fusion weight is chosen on ``pairsDevTrain`` (10-fold accuracy, then AUC), and every
embedder is scored on ``pairsDevTest`` (disjoint people) at the threshold that is best on
``pairsDevTrain``; ``--npz-dir`` writes each embedder's vectors of the View 1 training images for
``bench/calibrate_thresholds.py --npz`` (thresholds fitted on training people only).

``pairs``: LFW's 10 folds for dlib-resnet, facenet, fusion (concatenation, the embedder) and a learned
linear projection of the two embeddings back to 128-D, trained with faceprint's triplet machinery (PK
batches, random then semi-hard mining, triplet loss) on the people of the nine other folds for each fold,
so it is scored only on people it never saw; ``--anchor`` adds face_recognition's pipeline.

``--dets NPZ`` seeds the detection cache with detections made earlier by the same detector (names,
boxes, marks, found: the subject face of each image) to spare the CPU; ``--cache`` picks the cache file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data"))
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)


def embed(paths: list[Path], cache: Path | None, dets: Path | None):
    """(dlib vectors, facenet vectors, the fusion run, the fusion embedder) for ``paths``."""
    from faceprint.evaluation.cache import Detections, EmbeddingCache, file_hash
    from faceprint.evaluation.runner import EmbeddingRunner, PipelineConfig
    from faceprint.types import Detection

    store = EmbeddingCache(cache) if cache else EmbeddingCache()
    runner = EmbeddingRunner(PipelineConfig(label="fusion", embedder="fusion"), cache=store)
    if dets is not None:
        from faceprint.io import load_image

        z = np.load(dets)
        known = {
            str(n): (b, m)
            for n, b, m, f in zip(z["names"], z["boxes"], z["marks"], z["found"], strict=True)
            if f
        }
        seed = {}
        for p in paths:
            name = f"{p.parent.name}/{p.name}"
            if name in known:
                box, marks = known[name]
                shape = load_image(p).shape[:2]
                seed[file_hash(p)] = Detections(shape, [Detection(tuple(map(float, box)), 1.0, marks)])
        have = store.get_detections(runner.detector_key, list(seed))
        store.put_detections(runner.detector_key, {k: v for k, v in seed.items() if k not in have})
    start = time.perf_counter()
    run = runner.embed_paths(paths)
    emb = runner.analyzer.embedder
    print(
        f"embedded {run.embedded} of {len(paths)} images in {time.perf_counter() - start:.0f} s "
        f"({emb.name} {emb.version})",
        file=sys.stderr,
    )
    w = emb.weight
    return run.vectors[:, :128] / np.sqrt(w), run.vectors[:, 128:] / np.sqrt(1 - w), run, emb


def fuse(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    return np.concatenate([np.sqrt(w) * a, np.sqrt(1 - w) * b], axis=1).astype(np.float32)


def distances(pairs, paths: list[Path], vectors: np.ndarray) -> np.ndarray:
    return pairs.distances(dict(zip(paths, vectors, strict=True)))


def view1(args: argparse.Namespace) -> None:
    from faceprint.evaluation.metrics import best_threshold, kfold_accuracy, roc, threshold_at_far
    from faceprint.evaluation.pairs import read_lfw_pairs
    from faceprint.evaluation.report import text_table

    lfw, protocol = DATA / "lfw" / "lfw-deepfunneled", DATA / "lfw" / "protocol"
    train = read_lfw_pairs(protocol / "pairsDevTrain.txt", lfw)
    test = read_lfw_pairs(protocol / "pairsDevTest.txt", lfw)
    paths = sorted(set(train.images) | set(test.images))
    a, b, run, emb = embed(paths, args.cache, args.dets)
    folds = np.arange(len(train)) % 10
    rows = []
    for w in WEIGHTS:
        d = distances(train, paths, fuse(a, b, w))
        rows.append((w, kfold_accuracy(d, train.same, folds).mean, roc(d, train.same).auc))
    print("fusion weight (dlib-resnet's share of the squared distance), on pairsDevTrain:")
    print(
        text_table(
            ["weight", "10-fold accuracy", "AUC"],
            [[f"{w:.1f}", f"{acc:.2%}", f"{auc:.5f}"] for w, acc, auc in rows],
        )
    )
    best_w = max(rows, key=lambda r: (round(r[1], 6), r[2]))[0]
    print(f"chosen weight: {best_w} (the embedder's WEIGHT is {emb.weight})\n")
    table = []
    for name, vectors in (("dlib-resnet", a), ("facenet", b), (f"fusion w={best_w}", fuse(a, b, best_w))):
        d_train, d_test = distances(train, paths, vectors), distances(test, paths, vectors)
        choice = best_threshold(d_train, train.same)
        acc = float(np.mean((d_test <= choice.threshold) == test.same))
        tar = threshold_at_far(d_test, test.same, 1e-2).tar
        table.append(
            [name, f"{acc:.2%}", f"{choice.threshold:.4f}", f"{roc(d_test, test.same).auc:.5f}", f"{tar:.2%}"]
        )
    print(f"pairsDevTest ({len(test)} pairs), threshold = best accuracy on pairsDevTrain:")
    print(text_table(["embedder", "accuracy", "threshold", "AUC", "TAR@FAR 1%"], table))
    if args.npz_dir:
        args.npz_dir.mkdir(parents=True, exist_ok=True)
        train_people = {p.parent.name for p in train.images}
        keep = np.array([p.parent.name in train_people and p in set(train.images) for p in paths])
        rel = np.array([f"{p.parent.name}/{p.name}" for p in paths])[keep]
        for name, vectors in (("dlib-resnet", a), ("facenet", b), ("fusion", fuse(a, b, best_w))):
            np.savez(args.npz_dir / f"{name}.npz", paths=rel, embeddings=vectors[keep], found=run.found[keep])
        print(f"wrote {args.npz_dir}/{{dlib-resnet,facenet,fusion}}.npz ({keep.sum()} pairsDevTrain images)")


def train_projection(x: np.ndarray, labels: np.ndarray, seed: int = 0, epochs: int = 30) -> np.ndarray:
    """A 256 -> 128 linear map trained with triplet loss on PK batches (P=32 people x K=4 images), random
    negatives for the first third of the epochs, then semi-hard (the seed's curriculum); starts from the
    plain sum of the two embeddings."""
    import torch

    from faceprint.training.losses import triplet_loss
    from faceprint.training.mining import mine
    from faceprint.training.sampler import PKSampler

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    weight = torch.nn.Parameter(torch.cat([torch.eye(128), torch.eye(128)], dim=1) / np.sqrt(2))
    optimiser = torch.optim.Adam([weight], lr=1e-3)
    sampler = PKSampler(labels, p=32, k=4, seed=seed)
    xt, lt = torch.from_numpy(x), torch.from_numpy(labels)
    for epoch in range(epochs):
        strategy = "random" if epoch < epochs // 3 else "semi-hard"
        for batch in sampler.batches(epoch):
            idx = torch.as_tensor(batch)
            out = torch.nn.functional.normalize(xt[idx] @ weight.T, dim=1)
            loss = triplet_loss(out, mine(out, lt[idx], strategy, 0.2, generator), 0.2)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return weight.detach().numpy()


def pairs_report(args: argparse.Namespace) -> None:
    from faceprint.evaluation.metrics import best_threshold, eer, roc, threshold_at_far
    from faceprint.evaluation.pairs import read_lfw_pairs
    from faceprint.evaluation.protocols import pair_metrics
    from faceprint.evaluation.report import text_table

    lfw = DATA / "lfw" / "lfw-deepfunneled"
    pairs = read_lfw_pairs(DATA / "lfw" / "protocol" / "pairs.txt", lfw)
    paths = list(dict.fromkeys(pairs.images))
    a, b, run, emb = embed(paths, args.cache, args.dets)
    rows = []

    def row(name: str, m) -> None:
        tar = {p.target_far: p.tar for p in m.tar_at_far}
        rows.append(
            [
                name,
                f"{m.folded.mean:.2%} ± {m.folded.std:.2%}",
                f"{tar.get(1e-3, float('nan')):.1%}",
                f"{m.roc.auc:.4f}",
                f"{m.eer.rate:.2%}",
            ]
        )

    for name, vectors in (
        ("dlib-resnet", a),
        ("facenet", b),
        (f"fusion (w={emb.weight:g})", fuse(a, b, emb.weight)),
    ):
        row(name, pair_metrics(pairs, dict(zip(paths, vectors, strict=True))))
    # Learned projection, one model per fold trained on the other folds' people.
    person = np.array([p.parent.name for p in paths])
    fold_of_person = {}
    for pair in pairs.pairs:
        fold_of_person.setdefault(pair.a.parent.name, pair.fold)
        fold_of_person.setdefault(pair.b.parent.name, pair.fold)
    img_fold = np.array([fold_of_person[n] for n in person])
    x = np.concatenate([a, b], axis=1).astype(np.float32)
    d_all = np.zeros(len(pairs))
    accs = []
    start = time.perf_counter()
    for fold in np.unique(pairs.folds):
        train_idx = np.flatnonzero(img_fold != fold)
        _, labels = np.unique(person[train_idx], return_inverse=True)
        w = train_projection(x[train_idx], labels.astype(np.int64), seed=int(fold))
        proj = x @ w.T
        proj /= np.linalg.norm(proj, axis=1, keepdims=True)
        d = distances(pairs, paths, proj)
        test = pairs.folds == fold
        choice = best_threshold(d[~test], pairs.same[~test])
        accs.append(float(np.mean((d[test] <= choice.threshold) == pairs.same[test])))
        d_all[test] = d[test]
    same = pairs.same
    tar = threshold_at_far(d_all, same, 1e-3).tar

    rows.append(
        [
            "fusion, learned 256->128 (per fold)",
            f"{np.mean(accs):.2%} ± {np.std(accs):.2%}",
            f"{tar:.1%}",
            f"{roc(d_all, same).auc:.4f}",
            f"{eer(d_all, same).rate:.2%}",
        ]
    )
    print(f"learned projections: {time.perf_counter() - start:.0f} s for 10 folds", file=sys.stderr)
    if args.anchor:
        sys.path.insert(0, str(REPO / "bench"))
        from bench_eval_lfw import anchor_row

        anchor = anchor_row(DATA / "lfw" / "protocol" / "pairs.txt", lfw)
        rows.append([anchor[0], anchor[1], anchor[5], anchor[2], anchor[3]])
    print(
        f"LFW pairs.txt, 10 folds ({len(pairs)} pairs, {len(paths)} images, "
        f"{int((~run.found).sum())} without a face); "
        "faceprint pipeline: MTCNN, each network's own chip, face + mirror image"
    )
    print(text_table(["embedder", "10-fold accuracy", "TAR@FAR 1e-3", "AUC", "EER"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["view1", "pairs"])
    parser.add_argument("--cache", type=Path, help="evaluation cache file (default: faceprint's)")
    parser.add_argument("--dets", type=Path, help="seed the detection cache from this npz")
    parser.add_argument("--npz-dir", type=Path, help="view1: write training-image vectors here")
    parser.add_argument("--anchor", action="store_true", help="pairs: add face_recognition's pipeline")
    args = parser.parse_args()
    view1(args) if args.mode == "view1" else pairs_report(args)


if __name__ == "__main__":
    main()
