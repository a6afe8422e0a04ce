"""Open-set identification: gallery/probe split of a labelled folder, CMC, DIR at FAR, open-set ROC.

Split (LFW open-set style): the gallery holds the first image of every person with 2+ images, their
other images are the known probes, and every image of a person with a single image is an unknown probe.
Definitions (standard open-set ones): a probe's score is its distance to the nearest gallery identity;
FAR(t) = fraction of unknown probes whose score is <= t; DIR(t) = fraction of known probes whose nearest
identity is the right one AND whose score is <= t.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceprint.evaluation import EvaluationError
from faceprint.evaluation.metrics import DEFAULT_FAR_TARGETS, roc, threshold_at_far
from faceprint.evaluation.pairs import usable_images


@dataclass(frozen=True)
class IdentificationSplit:
    gallery: tuple[tuple[str, Path], ...]  # (person, image)
    known: tuple[tuple[str, Path], ...]
    unknown: tuple[tuple[str, Path], ...]
    source: str

    @property
    def images(self) -> tuple[Path, ...]:
        return tuple(p for _, p in (*self.gallery, *self.known, *self.unknown))


def open_set_split(root: Path | str, exclude: Collection[Path] = frozenset()) -> IdentificationSplit:
    people = usable_images(root, exclude)
    gallery, known, unknown = [], [], []
    for name, images in people.items():
        if len(images) >= 2:
            gallery.append((name, images[0]))
            known.extend((name, p) for p in images[1:])
        else:
            unknown.append((name, images[0]))
    if not gallery or not known:
        raise EvaluationError(f"{root}: identification needs people with 2+ images (found none)")
    counts = f"{len(gallery)} gallery identities, {len(known)} known probes, {len(unknown)} unknown probes"
    source = f"{root} ({counts})"
    return IdentificationSplit(tuple(gallery), tuple(known), tuple(unknown), source)


@dataclass(frozen=True)
class DirAtFar:
    target_far: float
    threshold: float
    far: float
    dir: float


@dataclass(frozen=True)
class IdentificationMetrics:
    n_gallery: int
    n_known: int
    n_unknown: int
    cmc: np.ndarray = field(repr=False)  # cmc[k-1] = fraction of known probes with the truth in the top k
    dir_at_far: tuple[DirAtFar, ...]
    refused_far: tuple[float, ...]
    roc_far: np.ndarray = field(repr=False)  # open-set ROC: FAR against DIR, over every threshold
    roc_dir: np.ndarray = field(repr=False)
    known_scores: np.ndarray = field(repr=False)  # nearest-identity distance of each known probe
    known_correct: np.ndarray = field(repr=False)  # rank-1 right
    unknown_scores: np.ndarray = field(repr=False)

    @property
    def rank1(self) -> float:
        return float(self.cmc[0])

    @property
    def rank5(self) -> float:
        return float(self.cmc[min(4, self.cmc.size - 1)])

    def to_dict(self) -> dict:
        return {
            "gallery_identities": self.n_gallery,
            "known_probes": self.n_known,
            "unknown_probes": self.n_unknown,
            "rank1": self.rank1,
            "rank5": self.rank5,
            "cmc": [float(v) for v in self.cmc[:20]],
            "dir_at_far": [
                {"target_far": p.target_far, "far": p.far, "dir": p.dir, "threshold": p.threshold}
                for p in self.dir_at_far
            ],
            "refused_far_targets": list(self.refused_far),
        }


def identification_metrics(
    gallery: np.ndarray,
    gallery_labels: Sequence[str],
    known: np.ndarray,
    known_labels: Sequence[str],
    unknown: np.ndarray,
    *,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
) -> IdentificationMetrics:
    """Metrics from L2-normalised embeddings; several gallery images of one identity count as one
    identity scored by its nearest image."""
    ids, gallery_idx = np.unique(np.asarray(gallery_labels), return_inverse=True)
    missing = sorted(set(known_labels) - set(ids))
    if missing:
        raise EvaluationError(f"known probes of people not in the gallery: {', '.join(missing[:5])}")
    known_scores_all = _identity_distances(known, gallery, gallery_idx, ids.size)  # (K, I)
    truth = np.searchsorted(ids, np.asarray(known_labels))
    true_d = known_scores_all[np.arange(len(truth)), truth]
    # Rank of the truth = 1 + identities strictly closer (ties resolved in the probe's favour).
    ranks = 1 + (known_scores_all < true_d[:, None]).sum(axis=1)
    cmc = np.array([np.mean(ranks <= k) for k in range(1, ids.size + 1)])
    best = known_scores_all.min(axis=1)
    correct = ranks == 1
    unknown_best = _identity_distances(unknown, gallery, gallery_idx, ids.size).min(axis=1)

    points, refused = [], []
    if unknown_best.size and correct.any():
        # DIR is the TAR of (correct known probes vs unknown probes), scaled by the fraction correct.
        d = np.r_[best[correct], unknown_best]
        same = np.r_[np.ones(int(correct.sum()), bool), np.zeros(unknown_best.size, bool)]
        for target in far_targets:
            if unknown_best.size * target < 1.0 - 1e-9:
                refused.append(float(target))
                continue
            p = threshold_at_far(d, same, target)
            points.append(DirAtFar(p.target_far, p.threshold, p.far, p.tar * float(correct.mean())))
        curve = roc(d, same)
        roc_far, roc_dir = curve.far, curve.tar * float(correct.mean())
    else:
        roc_far = roc_dir = np.zeros(0)
        refused = [float(t) for t in far_targets]
    return IdentificationMetrics(
        n_gallery=int(ids.size),
        n_known=len(truth),
        n_unknown=int(unknown_best.size),
        cmc=cmc,
        dir_at_far=tuple(points),
        refused_far=tuple(refused),
        roc_far=roc_far,
        roc_dir=roc_dir,
        known_scores=best,
        known_correct=correct,
        unknown_scores=unknown_best,
    )


def _identity_distances(probes: np.ndarray, gallery: np.ndarray, idx: np.ndarray, n_ids: int) -> np.ndarray:
    """(P, I) distance of each probe to the nearest gallery image of each identity."""
    if len(probes) == 0:
        return np.zeros((0, n_ids))
    # d^2 = 2 - 2 cos on unit vectors; clipped because rounding can make it slightly negative.
    d = np.sqrt(np.clip(2.0 - 2.0 * probes @ gallery.T, 0.0, None))
    out = np.full((len(probes), n_ids), np.inf)
    np.minimum.at(out.T, idx, d.T)
    return out
