"""Training evidence on LFW's development view (see README "Training"): the seed CNN from scratch
(random triplets, then semi-hard) and the dlib ResNet fine-tuned, tested on pairsDevTest (disjoint people).

Inputs are folders written by `faceprint data prepare` (DevTrain people split into train/val; the DevTest
pairs; optionally the 10-fold pairs.txt). Runs resume where they stopped. Prints one table: DevTest
accuracy at each model's own calibrated threshold (from its validation split) and at the best threshold,
plus the 10-fold LFW accuracy; the pretrained dlib ResNet is the anchor, evaluated in the same run.

    nice -n 10 python bench/train_lfw_dev.py --devtrain D --devtest T --lfw-pairs L --runs R
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from faceprint import models
from faceprint.embedding.trained import load_architecture
from faceprint.evaluation.metrics import accuracy_at, best_threshold, kfold_accuracy
from faceprint.training.dataset import PairSet, load_pairs, load_split, make_pairs, read_info
from faceprint.training.export import onnx_runner
from faceprint.training.models import Architecture, build_model, nchw
from faceprint.training.trainer import TrainConfig, pair_distances, train

CNN = TrainConfig(
    arch="seed-cnn",
    arch_config={"input_size": 64, "channels": [32, 64, 128, 256]},
    epochs=12,
    random_epochs=4,
    p=8,
    k=4,
    optimizer="rmsprop",
    lr=1e-4,
    patience=5,
)
# Only the last residual block and the projection train: their input is computed once (frozen prefix).
FINETUNE = TrainConfig(
    arch="dlib-resnet",
    arch_config={"freeze": 5},
    epochs=6,
    random_epochs=2,
    optimizer="rmsprop",
    lr=1e-5,
    augment=False,
    patience=5,
)


def run(data: Path, config: TrainConfig, out: Path) -> float:
    """Train (or resume) one run; returns mean seconds per epoch."""
    size = build_model(config.arch, config.arch_config).input_size
    info = read_info(data)
    train_set = load_split(data, "train", size)
    val = make_pairs(load_split(data, "val", size), 3000, config.seed)
    print(f"{out.name}: {len(train_set.labels)} training chips, {len(train_set.identities)} identities")
    result = train(train_set, val, config, out, chip_size=info.chip_size, template=info.template)
    return float(np.mean([h.seconds for h in result.history]))


def evaluate(distances: np.ndarray, pairs: PairSet, threshold: float | None) -> dict[str, float]:
    out = {"pairs": len(distances), "best": best_threshold(distances, pairs.same).accuracy}
    out["calibrated"] = (
        accuracy_at(distances, pairs.same, threshold) if threshold is not None else float("nan")
    )
    if len(set(pairs.fold.tolist())) > 1:
        out["10-fold"] = kfold_accuracy(distances, pairs.same, pairs.fold).mean
    return out


@torch.no_grad()
def dlib_distances(archs: list[Architecture], pairs: PairSet) -> list[np.ndarray]:
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
    parser.add_argument("--devtrain", type=Path, required=True)
    parser.add_argument("--devtest", type=Path, required=True)
    parser.add_argument("--lfw-pairs", type=Path, help="prepared pairs.txt folder (10-fold accuracy)")
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--cnn-epochs", type=int, default=CNN.epochs)
    parser.add_argument("--random-epochs", type=int, default=CNN.random_epochs)
    parser.add_argument("--control", action="store_true", help="also train a random-only CNN as long")
    parser.add_argument("--skip-finetune", action="store_true")
    args = parser.parse_args()

    cnn = replace(CNN, epochs=args.cnn_epochs, random_epochs=args.random_epochs)
    timing = {"seed CNN": run(args.devtrain, cnn, args.runs / "cnn")}
    if args.control:
        timing["seed CNN, random only"] = run(
            args.devtrain, replace(cnn, mining="random"), args.runs / "cnn-random"
        )
    if not args.skip_finetune:
        timing["dlib fine-tuned"] = run(args.devtrain, FINETUNE, args.runs / "dlib-ft")

    cnn_rows = [
        ("seed CNN after random phase", *model(args.runs / "cnn" / "best-random.fpm")),
        ("seed CNN after semi-hard phase", *model(args.runs / "cnn" / "best.fpm")),
    ]
    if args.control:
        cnn_rows.append(("seed CNN, random only (control)", *model(args.runs / "cnn-random" / "best.fpm")))
    results = []
    for name, arch, threshold in cnn_rows:
        pairs = load_pairs(args.devtest, arch.input_size)
        results.append((name, evaluate(pair_distances(arch, pairs), pairs, threshold), {}))
    if not args.skip_finetune:
        tuned, tuned_threshold = model(args.runs / "dlib-ft" / "best.fpm")
        freeze = tuned.module.freeze
        pretrained = build_model("dlib-resnet", {"freeze": freeze}, pretrained=True)
        names = ("dlib ResNet pretrained (anchor)", "dlib ResNet fine-tuned")
        thresholds = (models.create("dlib-resnet", "embedder").threshold, tuned_threshold)
        scores = {name: [] for name in names}
        for folder in [args.devtest] + ([args.lfw_pairs] if args.lfw_pairs else []):
            pairs = load_pairs(folder)
            for name, threshold, d in zip(
                names, thresholds, dlib_distances([pretrained, tuned], pairs), strict=True
            ):
                scores[name].append(evaluate(d, pairs, threshold))
        results += [(name, *(scores[name] + [{}])[:2]) for name in names]
    print()
    print(f"{'model':34} {'DevTest pairs':>13} {'acc@own thr':>11} {'acc@best thr':>12} {'LFW 10-fold':>11}")
    for name, dev, ten in results:
        print(
            f"{name:34} {dev['pairs']:>13} {dev['calibrated']:>11.4f} {dev['best']:>12.4f} "
            f"{ten.get('10-fold', float('nan')):>11.4f}"
        )
    print()
    for name, seconds in timing.items():
        print(f"{name}: {seconds:.1f} s per epoch (this machine, 2 shared cores)")


if __name__ == "__main__":
    main()
