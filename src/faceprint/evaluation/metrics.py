"""Verification metrics on pair distances: ROC/AUC, EER, TAR at FAR, best threshold, k-fold accuracy.

Conventions shared with the gallery's calibration: a pair is *accepted* (predicted "same person") when its
Euclidean distance is ``<= threshold``; ``same`` is a boolean array, True for genuine (same-person) pairs.
FAR = accepted different-person pairs / different-person pairs; TAR = accepted same-person pairs /
same-person pairs. scikit-learn computes the curve; this module only maps it to distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import roc_curve as sk_roc_curve

from faceprint.evaluation import EvaluationError

DEFAULT_FAR_TARGETS: tuple[float, ...] = (1e-1, 1e-2, 1e-3)


@dataclass(frozen=True)
class RocCurve:
    """Every operating point, from "accept nothing" (threshold -inf) to "accept everything"."""

    far: np.ndarray = field(repr=False)
    tar: np.ndarray = field(repr=False)
    thresholds: np.ndarray = field(repr=False)  # distance thresholds, increasing; first is -inf
    auc: float
    n_same: int
    n_diff: int


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold with the highest TAR whose FAR on the data is <= the target, and the FAR achieved."""

    target_far: float
    threshold: float
    far: float
    tar: float


@dataclass(frozen=True)
class EqualErrorRate:
    rate: float
    threshold: float


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    accuracy: float


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts at one threshold; rows are the truth (same, different), columns the decision."""

    threshold: float
    true_accepts: int
    false_rejects: int
    false_accepts: int
    true_rejects: int

    def as_array(self) -> np.ndarray:
        return np.array([[self.true_accepts, self.false_rejects], [self.false_accepts, self.true_rejects]])

    @property
    def accuracy(self) -> float:
        total = self.true_accepts + self.false_rejects + self.false_accepts + self.true_rejects
        return (self.true_accepts + self.true_rejects) / total


@dataclass(frozen=True)
class FoldedAccuracy:
    """Accuracy of each fold at the threshold chosen on all the other folds."""

    mean: float
    std: float  # population std over folds (ddof=0), as the LFW literature reports it
    accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]


def _check(distances: np.ndarray | Sequence[float], same: np.ndarray | Sequence[bool]):
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    if d.shape != s.shape:
        raise EvaluationError(f"{d.size} distances but {s.size} same/different labels")
    if not np.all(np.isfinite(d)):
        raise EvaluationError("distances contain NaN or infinity")
    n_same = int(s.sum())
    if n_same == 0 or n_same == s.size:
        raise EvaluationError(
            "need both same-person and different-person pairs "
            f"(got {n_same} same, {s.size - n_same} different)"
        )
    return d, s


def _full_roc(d: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, distance thresholds) at every distinct distance; scores are -distance for sklearn."""
    far, tar, score_thr = sk_roc_curve(s, -d, drop_intermediate=False)
    return far, tar, -score_thr


def roc(distances: np.ndarray | Sequence[float], same: np.ndarray | Sequence[bool]) -> RocCurve:
    d, s = _check(distances, same)
    far, tar, thr = _full_roc(d, s)
    return RocCurve(far, tar, thr, float(sk_auc(far, tar)), int(s.sum()), int((~s).sum()))


def threshold_at_far(
    distances: np.ndarray | Sequence[float], same: np.ndarray | Sequence[bool], target_far: float
) -> OperatingPoint:
    """Highest-TAR operating point with FAR <= ``target_far``.

    Refuses a target that the number of different-person pairs cannot resolve (fewer than 1/target pairs:
    not even one false accept would be allowed, so the "FAR" would be a guess). The threshold returned is
    the largest pair distance accepted, so the FAR reported is exactly what it gives on this data.
    """
    if not 0.0 < target_far < 1.0:
        raise EvaluationError(f"FAR target must be between 0 and 1, got {target_far}")
    d, s = _check(distances, same)
    n_diff = int((~s).sum())
    if n_diff * target_far < 1.0 - 1e-9:
        raise EvaluationError(
            f"FAR {target_far:g} needs at least {int(np.ceil(1 / target_far - 1e-9))} "
            f"different-person pairs, only {n_diff} available"
        )
    far, tar, thr = _full_roc(d, s)
    # Compare counts, not rates, so 3/3000 vs 1e-3 never hinges on float rounding.
    allowed = np.floor(target_far * n_diff + 1e-9)
    idx = int(np.nonzero(np.rint(far * n_diff) <= allowed)[0][-1])
    return OperatingPoint(float(target_far), float(thr[idx]), float(far[idx]), float(tar[idx]))


def eer(distances: np.ndarray | Sequence[float], same: np.ndarray | Sequence[bool]) -> EqualErrorRate:
    """Equal error rate: where FAR = FRR, linearly interpolated between the two bracketing ROC points."""
    d, s = _check(distances, same)
    far, tar, thr = _full_roc(d, s)
    gap = (1.0 - tar) - far  # FRR - FAR: starts at 1 (accept nothing) and decreases to -1
    k = int(np.nonzero(gap <= 0)[0][0])
    if gap[k] == 0:
        return EqualErrorRate(float(far[k]), float(thr[k]))
    # Weight of point k on the segment from k-1 to k where the gap crosses zero.
    w = gap[k - 1] / (gap[k - 1] - gap[k])
    rate = far[k - 1] + w * (far[k] - far[k - 1])
    lo = thr[k - 1] if np.isfinite(thr[k - 1]) else thr[k]
    return EqualErrorRate(float(rate), float(lo + w * (thr[k] - lo)))


def best_threshold(
    distances: np.ndarray | Sequence[float], same: np.ndarray | Sequence[bool]
) -> ThresholdChoice:
    """Threshold of highest accuracy; placed midway to the next larger distance so that it does not sit
    on a training pair (ties between thresholds go to the smallest one)."""
    d, s = _check(distances, same)
    far, tar, thr = _full_roc(d, s)
    n_same, n_diff = int(s.sum()), int((~s).sum())
    correct = np.rint(tar * n_same) + np.rint((1.0 - far) * n_diff)
    k = int(np.argmax(correct))
    accuracy = float(correct[k] / d.size)
    if k + 1 < thr.size:
        upper = thr[k + 1]
        threshold = (thr[k] + upper) / 2 if np.isfinite(thr[k]) else upper - 1e-6
    else:
        threshold = thr[k]
    return ThresholdChoice(float(threshold), accuracy)


def accuracy_at(
    distances: np.ndarray | Sequence[float], same: np.ndarray | Sequence[bool], threshold: float
) -> float:
    d, s = _check(distances, same)
    return float(np.mean((d <= threshold) == s))


def confusion_at(
    distances: np.ndarray | Sequence[float], same: np.ndarray | Sequence[bool], threshold: float
) -> ConfusionMatrix:
    d, s = _check(distances, same)
    (ta, fr), (fa, tr) = sk_confusion_matrix(s, d <= threshold, labels=[True, False])
    return ConfusionMatrix(float(threshold), int(ta), int(fr), int(fa), int(tr))


def kfold_accuracy(
    distances: np.ndarray | Sequence[float],
    same: np.ndarray | Sequence[bool],
    folds: np.ndarray | Sequence[int],
) -> FoldedAccuracy:
    """LFW-style accuracy: for each fold, pick the best threshold on the other folds and test on it."""
    d, s = _check(distances, same)
    f = np.asarray(folds).ravel()
    if f.shape != d.shape:
        raise EvaluationError(f"{f.size} fold labels for {d.size} pairs")
    ids = np.unique(f)
    if ids.size < 2:
        raise EvaluationError("k-fold accuracy needs at least 2 folds")
    accuracies, thresholds = [], []
    for fold in ids:
        test = f == fold
        choice = best_threshold(d[~test], s[~test])
        thresholds.append(choice.threshold)
        accuracies.append(float(np.mean((d[test] <= choice.threshold) == s[test])))
    acc = np.asarray(accuracies)
    return FoldedAccuracy(float(acc.mean()), float(acc.std()), tuple(accuracies), tuple(thresholds))


@dataclass(frozen=True)
class VerificationMetrics:
    """Everything the verification report prints, computed once from pair distances."""

    n_same: int
    n_diff: int
    roc: RocCurve
    eer: EqualErrorRate
    best: ThresholdChoice
    folded: FoldedAccuracy | None
    tar_at_far: tuple[OperatingPoint, ...]
    refused_far: tuple[float, ...]  # targets the number of different-person pairs cannot support
    confusion: ConfusionMatrix

    def to_dict(self) -> dict:
        out: dict = {
            "pairs": {"same": self.n_same, "different": self.n_diff},
            "auc": self.roc.auc,
            "eer": {"rate": self.eer.rate, "threshold": self.eer.threshold},
            "best_threshold": {"threshold": self.best.threshold, "accuracy": self.best.accuracy},
            "tar_at_far": [
                {"target_far": p.target_far, "far": p.far, "tar": p.tar, "threshold": p.threshold}
                for p in self.tar_at_far
            ],
            "refused_far_targets": list(self.refused_far),
            "confusion": {
                "threshold": self.confusion.threshold,
                "true_accepts": self.confusion.true_accepts,
                "false_rejects": self.confusion.false_rejects,
                "false_accepts": self.confusion.false_accepts,
                "true_rejects": self.confusion.true_rejects,
            },
        }
        if self.folded is not None:
            out["kfold"] = {
                "accuracy_mean": self.folded.mean,
                "accuracy_std": self.folded.std,
                "accuracies": list(self.folded.accuracies),
                "thresholds": list(self.folded.thresholds),
            }
        return out


def verification_metrics(
    distances: np.ndarray | Sequence[float],
    same: np.ndarray | Sequence[bool],
    *,
    folds: np.ndarray | Sequence[int] | None = None,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
    threshold: float | None = None,
) -> VerificationMetrics:
    """All verification metrics; the confusion matrix is at ``threshold`` (default: the best one)."""
    d, s = _check(distances, same)
    points, refused = [], []
    for target in far_targets:
        if int((~s).sum()) * target < 1.0 - 1e-9:
            refused.append(float(target))
        else:
            points.append(threshold_at_far(d, s, target))
    best = best_threshold(d, s)
    return VerificationMetrics(
        n_same=int(s.sum()),
        n_diff=int((~s).sum()),
        roc=roc(d, s),
        eer=eer(d, s),
        best=best,
        folded=None if folds is None else kfold_accuracy(d, s, folds),
        tar_at_far=tuple(points),
        refused_far=tuple(refused),
        confusion=confusion_at(d, s, best.threshold if threshold is None else threshold),
    )
