"""Fit the built-in calibration of an embedder on LFW View 1's training people (``peopleDevTrain``) and
check it on the people disjoint from them: the 1:1 threshold at FAR 0.1% with its confidence, and the
stranger model that sets the identification threshold for a gallery's size (faceprint.thresholds).

Prints:
- the ``Calibration(...)`` literal for ``faceprint.thresholds.BUILTIN``;
- FPIR (strangers named as someone) at the model's threshold for a 1% target, against galleries of
  1 to 3,000 random people (one template, and the mean of 3), on training and on held-out people;
- the calibration error of both confidences on held-out people: 1:1 on ``pairsDevTest`` pairs, at the
  prior odds that make the threshold the even-odds point, and the identification confidence.

    python bench/calibrate_openset.py [--spec default:] [--cache PATH] [--cached-train]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def fpir_check(model, vectors, labels, sizes, templates, target, seed=0):
    """(N, empirical FPIR, model threshold) for random galleries of N people."""
    rng = np.random.default_rng(seed)
    names = np.unique(labels)
    index = {n: np.flatnonzero(labels == n) for n in names}
    eligible = np.array([n for n in names if len(index[n]) >= templates])
    rows = []
    for n in sizes:
        if n > len(eligible) - 100:
            continue
        limit = model.threshold({templates: n}, target)
        accepted = trials = 0
        for _ in range(max(3, min(40, 20_000 // n))):
            gallery = rng.choice(eligible, n, replace=False)
            enrolled = set(gallery)
            means = np.stack(
                [vectors[rng.choice(index[g], templates, replace=False)].sum(0) for g in gallery]
            )
            means /= np.linalg.norm(means, axis=1, keepdims=True)
            strangers = np.array([rng.choice(index[s]) for s in names if s not in enrolled])
            best = np.sqrt(np.clip(2 - 2 * vectors[strangers] @ means.T, 0, None)).min(axis=1)
            accepted += int((best <= limit).sum())
            trials += len(strangers)
        rows.append((n, accepted / trials, limit, trials))
    return rows


def main() -> None:
    from calibrate_thresholds import pairs
    from lfw_openset import LFW, PROTOCOL, lfw_embeddings

    from faceprint.evaluation.calibration import (
        expected_calibration_error,
        fit_calibration,
        fit_stranger_model,
        identification_examples,
    )
    from faceprint.evaluation.pairs import read_lfw_pairs
    from faceprint.thresholds import DEFAULT_TARGET_FPIR

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--spec", default="default:", help="pipeline configuration (evaluate --config syntax)"
    )
    parser.add_argument("--cache", type=Path, help="embedding cache file (default: faceprint's cache folder)")
    parser.add_argument("--embedder", help="name in the printed literal (default: the spec's embedder)")
    parser.add_argument(
        "--cached-train", action="store_true", help="fit on the training people's cached images only"
    )
    args = parser.parse_args()

    from faceprint.evaluation.runner import PipelineConfig

    args.embedder = args.embedder or PipelineConfig.parse(args.spec).embedder
    lfw = lfw_embeddings(args.spec, args.cache, cached_train=args.cached_train)
    train_x, train_y = lfw.part(True)
    test_x, test_y = lfw.part(False)
    source = (
        f"LFW View 1 training people ({len(np.unique(train_y))} people, {len(train_y)} images, "
        f"{args.spec.rstrip(':') or 'default'} pipeline)"
    )
    d, same = pairs(train_x, train_y, 2_000_000, 300)
    strangers = fit_stranger_model(train_x, train_y, source=source)
    cal = fit_calibration(
        d,
        same,
        embedder=args.embedder,
        version=lfw.version,
        source=f"{source}: {same.sum():,} same-person / {(~same).sum():,} different-person pairs",
        strangers=strangers,
    )
    print(f"    EmbedderKey({args.embedder!r}, {lfw.version!r}): {cal!r},\n")

    print(f"FPIR at the model's threshold for a {DEFAULT_TARGET_FPIR:.0%} target (random galleries)")
    print(f"{'people':<18} | {'templates':>9} | {'N':>5} | {'threshold':>9} | {'FPIR':>7} | {'strangers':>9}")
    sizes = (1, 10, 100, 300, 1000, 3000)
    for label, (x, y) in (("training", (train_x, train_y)), ("held out", (test_x, test_y))):
        for k in (1, 3):
            for n, fpir, limit, trials in fpir_check(strangers, x, y, sizes, k, DEFAULT_TARGET_FPIR):
                print(f"{label:<18} | {k:>9} | {n:>5} | {limit:9.4f} | {fpir:7.2%} | {trials:>9}")

    # 1:1 confidence on held-out pairs (pairsDevTest), at the prior that puts 0.5 on the threshold:
    # a balanced fit's own 0.5 point m gives log prior odds = -slope * (m - threshold).
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(class_weight="balanced", C=1e6).fit(d[:, None], same)
    centre = -float(model.intercept_[0]) / float(model.coef_[0, 0])
    odds = float(np.exp(-cal.slope * (centre - cal.threshold)))
    dev = read_lfw_pairs(PROTOCOL / "pairsDevTest.txt", LFW)
    vec = dict(zip(lfw.paths, lfw.vectors, strict=True))
    dd = dev.distances(vec)
    p = cal.confidence(dd)
    w = np.where(dev.same, odds / (1 + odds), 1 / (1 + odds)) / np.where(
        dev.same, dev.same.mean(), 1 - dev.same.mean()
    )
    print(
        f"\n1:1 confidence on pairsDevTest ({len(dd)} pairs): 0.5 at {cal.threshold:.4f} = prior odds "
        f"same:different 1:{1 / odds:.0f}; calibration error (ECE, 10 bins) "
        f"{expected_calibration_error(p, dev.same, w):.4f} "
        f"at that prior; accuracy of the decision {np.mean((dd <= cal.threshold) == dev.same):.2%}"
    )
    # Identification confidence on held-out probes, at the prior odds (named right : not) that put its
    # 0.5 point on the threshold, from a balanced fit on the training probes as for the 1:1 confidence.
    train_offset, train_right = identification_examples(train_x, train_y, strangers)
    model = LogisticRegression(class_weight="balanced", C=1e6).fit(train_offset[:, None], train_right)
    odds = float(np.exp(-float(model.intercept_[0])))  # the balanced fit's log-odds at the threshold
    offset, right = identification_examples(test_x, test_y, strangers)
    pid = strangers.confidence(offset, 0.0)
    w = np.where(right, odds / (1 + odds), 1 / (1 + odds)) / np.where(right, right.mean(), 1 - right.mean())
    print(
        f"identification confidence, held-out probes ({len(right)}): 0.5 at the FPIR threshold = prior odds "
        f"named right:not {odds:.2f}:1; ECE {expected_calibration_error(pid, right, w):.4f} at that prior, "
        f"{expected_calibration_error(pid, right):.4f} on the held-out mix ({right.mean():.0%} named right "
        f"at rank 1); named (P >= 0.5): {np.mean(pid >= 0.5):.2%} of probes, "
        f"right {np.mean(right[pid >= 0.5]):.2%}"
    )


if __name__ == "__main__":
    main()
