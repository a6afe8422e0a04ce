"""Training evidence on LFW's development view (commands in docs/training.md): the seed CNN trained from
scratch (random triplets, then semi-hard) and the dlib ResNet fine-tuned, tested on pairsDevTest, whose
people are disjoint from peopleDevTrain.

Inputs: run folders written by `faceprint train` and pairs folders written by `faceprint data prepare`.
Prints DevTest accuracy at each model's own calibrated threshold (from its validation split) and at the
best threshold, the 10-fold LFW accuracy of the dlib models, and seconds per epoch; the pretrained dlib
ResNet is the anchor, evaluated in the same run on the same chips.

    nice -n 10 python bench/train_lfw_dev.py --devtest T --lfw-pairs L --runs R
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from faceprint import models
from faceprint.embedding.architectures import Architecture, build_model, nchw
from faceprint.embedding.trained import load_architecture
from faceprint.evaluation.metrics import accuracy_at, best_threshold, kfold_accuracy
from faceprint.training.dataset import ChipPairs, load_pairs
from faceprint.training.export import onnx_runner
from faceprint.training.trainer import pair_distances


def seconds_per_epoch(run: Path) -> float:
    with open(run / "history.csv", newline="") as f:
        return float(np.mean([float(r["seconds"]) for r in csv.DictReader(f)]))


def evaluate(distances: np.ndarray, pairs: ChipPairs, threshold: float | None) -> dict[str, float]:
    out = {"pairs": len(distances), "best": best_threshold(distances, pairs.same).accuracy}
    out["calibrated"] = (
        accuracy_at(distances, pairs.same, threshold) if threshold is not None else float("nan")
    )
    if len(set(pairs.fold.tolist())) > 1:
        out["10-fold"] = kfold_accuracy(distances, pairs.same, pairs.fold).mean
    return out


@torch.no_grad()
def dlib_distances(archs: list[Architecture], pairs: ChipPairs) -> list[np.ndarray]:
    """Pair distances of several dlib-resnet variants sharing one frozen prefix: the prefix runs once,
    through ONNX Runtime, and each variant applies its own trainable part."""
    run = onnx_runner(archs[0], archs[0].module.frozen)
    features = torch.cat([run(nchw(pairs.images[i : i + 64])) for i in range(0, len(pairs.images), 64)])
    out = []
    for arch in archs:
        arch.module.eval()
        emb = torch.cat([arch.module.trainable(f) for f in features.split(256)]).numpy()
        out.append(np.linalg.norm(emb[pairs.first] - emb[pairs.second], axis=1))
    return out


def model(path: Path) -> tuple[Architecture, float]:
    arch, meta = load_architecture(path)
    return arch, float(meta["threshold"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devtest", type=Path, required=True, help="prepared pairsDevTest.txt folder")
    parser.add_argument("--lfw-pairs", type=Path, help="prepared pairs.txt folder (10-fold accuracy)")
    parser.add_argument(
        "--runs", type=Path, required=True, help="holds cnn/, optionally cnn-random/, dlib-ft/"
    )
    args = parser.parse_args()

    cnn_rows = [
        ("seed CNN after random phase", args.runs / "cnn" / "best-random.fpm"),
        ("seed CNN best (val) overall", args.runs / "cnn" / "best.fpm"),
        ("seed CNN last epoch", args.runs / "cnn" / "last.fpm"),
        ("seed CNN, random only (control)", args.runs / "cnn-random" / "best.fpm"),
    ]
    results = []
    for name, path in cnn_rows:
        if path.is_file():
            arch, threshold = model(path)
            pairs = load_pairs(args.devtest, arch.input_size)
            results.append((name, evaluate(pair_distances(arch, pairs), pairs, threshold), {}))
    if (args.runs / "dlib-ft" / "best.fpm").is_file():
        tuned, tuned_threshold = model(args.runs / "dlib-ft" / "best.fpm")
        pretrained = build_model("dlib-resnet", {"freeze": tuned.module.freeze}, pretrained=True)
        names = ("dlib ResNet pretrained (anchor)", "dlib ResNet fine-tuned")
        thresholds = (models.create("dlib-resnet", "embedder").threshold, tuned_threshold)
        scores: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for folder in [args.devtest] + ([args.lfw_pairs] if args.lfw_pairs else []):
            pairs = load_pairs(folder)
            distances = dlib_distances([pretrained, tuned], pairs)
            for name, threshold, d in zip(names, thresholds, distances, strict=True):
                scores[name].append(evaluate(d, pairs, threshold))
        results += [(name, *(scores[name] + [{}])[:2]) for name in names]
    print(f"{'model':34} {'DevTest pairs':>13} {'acc@own thr':>11} {'acc@best thr':>12} {'LFW 10-fold':>11}")
    for name, dev, ten in results:
        print(
            f"{name:34} {dev['pairs']:>13} {dev['calibrated']:>11.4f} {dev['best']:>12.4f} "
            f"{dev.get('10-fold', ten.get('10-fold', float('nan'))):>11.4f}"
        )
    print()
    for run in ("cnn", "cnn-random", "dlib-ft"):
        if (args.runs / run / "history.csv").is_file():
            print(f"{run}: {seconds_per_epoch(args.runs / run):.1f} s per epoch")


if __name__ == "__main__":
    main()
