"""Fitting the table of :mod:`faceprint.thresholds` from labelled faces: the 1:1 threshold at a target
false-accept rate (the ROC arithmetic of ``metrics``) with the steepness of its confidence (a
class-balanced logistic P(same | distance), scikit-learn), and the :class:`StrangerModel` of open-set
identification (how near strangers come to enrolled people, by gallery size and templates per person).
Every fit is meant for LFW View 1's training people; ``bench/calibrate_openset.py`` runs it and reports
on people disjoint from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceprint.evaluation import EvaluationError
from faceprint.evaluation.metrics import threshold_at_far
from faceprint.thresholds import DEFAULT_TARGET_FAR, Calibration, StrangerModel

# Per-pair false-accept rates over which the stranger tail is fitted: below 1e-7 LFW's training people
# give too few pairs, above 5e-2 no useful threshold lies.
TAIL_RANGE = (1e-7, 5e-2)
SHIFT_TEMPLATES = (2, 3, 5, 8)  # templates per person at which the mean template's shift is measured
_BLOCK = 1000  # probe rows per distance block (1000 x 13k float32 ~ 50 MB)


def balanced_slope(distances: np.ndarray, positive: np.ndarray) -> float:
    """Steepness of a class-balanced logistic P(positive | distance) (per unit distance, > 0 when
    small distances mean positive)."""
    from sklearn.linear_model import LogisticRegression

    d = np.asarray(distances, dtype=np.float64).ravel()
    y = np.asarray(positive, dtype=bool).ravel()
    if y.all() or not y.any():
        raise EvaluationError("a confidence fit needs both positive and negative examples")
    model = LogisticRegression(class_weight="balanced", C=1e6).fit(d[:, None], y)
    return -float(model.coef_[0, 0])


def fit_calibration(
    distances: np.ndarray,
    same: np.ndarray,
    *,
    embedder: str,
    version: str = "",
    target_far: float = DEFAULT_TARGET_FAR,
    source: str = "",
    strangers: StrangerModel | None = None,
) -> Calibration:
    """Threshold at ``target_far`` and the confidence's steepness from labelled pairs of embeddings made
    by ``embedder`` at ``version`` (the confidence is centred on the threshold)."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    point = threshold_at_far(d, s, target_far)
    return Calibration(
        embedder=embedder,
        version=version,
        threshold=point.threshold,
        slope=balanced_slope(d, s),
        far=point.far,
        tar=point.tar,
        source=source or f"{s.sum()} same / {(~s).sum()} different pairs",
        strangers=strangers,
    )


def expected_calibration_error(
    probability: np.ndarray, outcome: np.ndarray, weights: np.ndarray | None = None, bins: int = 10
) -> float:
    """Weighted mean |P - observed frequency| over ``bins`` equal-width probability bins."""
    p = np.asarray(probability, dtype=np.float64).ravel()
    y = np.asarray(outcome, dtype=np.float64).ravel()
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if w[m].sum() > 0:
            total += w[m].sum() * abs(np.average(p[m], weights=w[m]) - np.average(y[m], weights=w[m]))
    return total / w.sum()


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(2.0 - 2.0 * a @ b.T, 0.0, None))


def impostor_cdf(vectors: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(distance grid, P(distance <= grid)) over every pair of images of different people."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    _, lab = np.unique(np.asarray(labels), return_inverse=True)
    edges = np.linspace(0.0, 2.0, 8001)
    counts = np.zeros(len(edges) - 1, np.int64)
    for lo in range(0, len(x), _BLOCK):
        rows = np.arange(lo, min(lo + _BLOCK, len(x)))
        d = _distances(x[rows], x)
        keep = (lab[rows, None] != lab[None, :]) & (rows[:, None] < np.arange(len(x))[None, :])
        counts += np.histogram(d[keep], edges)[0]
    if not counts.sum():
        raise EvaluationError("the stranger model needs images of at least two people")
    return edges[1:], np.cumsum(counts) / counts.sum()


def fit_tail(grid: np.ndarray, cdf: np.ndarray) -> tuple[float, float, float]:
    """log10 P(distance <= d) as a quadratic in d over TAIL_RANGE."""
    m = (cdf >= TAIL_RANGE[0]) & (cdf <= TAIL_RANGE[1])
    if m.sum() < 10:
        raise EvaluationError("too few different-person pairs to fit the stranger tail (need ~10M)")
    a, b, c = np.polyfit(grid[m], np.log10(cdf[m]), 2)
    return float(a), float(b), float(c)


def template_shift(
    vectors: np.ndarray, labels: np.ndarray, templates: int, tail: tuple[float, float, float], seed: int = 0
) -> float:
    """How much closer (in distance) a mean of ``templates`` faces sits to other people's faces than a
    single face does, at a per-pair false-accept rate of 1e-3."""
    rng = np.random.default_rng(seed)
    names = np.unique(labels)
    index = {n: np.flatnonzero(labels == n) for n in names}
    eligible = [n for n in names if len(index[n]) >= templates]
    if len(eligible) < 20:
        raise EvaluationError(f"too few people with {templates}+ images to measure the template shift")
    means = np.stack([vectors[rng.choice(index[n], templates, replace=False)].sum(0) for n in eligible])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    owner = np.searchsorted(names, eligible)
    _, lab = np.unique(labels, return_inverse=True)
    far = 1e-3
    lowest = []
    total = 0
    for lo in range(0, len(means), _BLOCK):
        d = _distances(means[lo : lo + _BLOCK], vectors)
        other = owner[lo : lo + _BLOCK, None] != lab[None, :]
        values = d[other]
        total += values.size
        lowest.append(np.sort(values)[: int(values.size * far * 2) + 1])
    quantile = np.sort(np.concatenate(lowest))[int(total * far)]
    a, b, c = tail
    single = (-b + np.sqrt(b * b - 4 * a * (c - np.log10(far)))) / (2 * a)
    return float(single - quantile)


@dataclass(frozen=True)
class OpenSetSplit:
    """Gallery / known / stranger indices into an array of embeddings (LFW open-set style)."""

    gallery: np.ndarray  # (G,) image indices, ``templates`` per person
    gallery_labels: np.ndarray  # (G,) person names
    known: np.ndarray  # other images of gallery people
    known_labels: np.ndarray
    strangers: np.ndarray  # every image of people with a single image


def open_set_indices(labels: np.ndarray, templates: int = 1) -> OpenSetSplit:
    """People with more than ``templates`` images: the first ``templates`` enrolled, the rest known
    probes; people with a single image: strangers."""
    gallery, gallery_labels, known, known_labels, strangers = [], [], [], [], []
    for name in np.unique(labels):
        idx = np.flatnonzero(labels == name)
        if len(idx) == 1:
            strangers.append(idx[0])
        elif len(idx) > templates:
            gallery += list(idx[:templates])
            gallery_labels += [name] * templates
            known += list(idx[templates:])
            known_labels += [name] * (len(idx) - templates)
    arrays = (gallery, gallery_labels, known, known_labels, strangers)
    return OpenSetSplit(*(np.asarray(a) for a in arrays))


def nearest_people(
    vectors: np.ndarray, split: OpenSetSplit, probes: np.ndarray, k: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """(names (P, k), distances (P, k)) of the ``k`` nearest gallery people of each probe, each person's
    templates mean-combined as the gallery does."""
    people, owner = np.unique(split.gallery_labels, return_inverse=True)
    means = np.zeros((len(people), vectors.shape[1]), np.float64)
    np.add.at(means, owner, vectors[split.gallery])
    means = (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)
    k = min(k, len(people))
    names, dists = [], []
    for lo in range(0, len(probes), _BLOCK):
        d = _distances(vectors[probes[lo : lo + _BLOCK]], means)
        top = np.argsort(d, axis=1)[:, :k]
        names.append(people[top])
        dists.append(np.take_along_axis(d, top, axis=1))
    return np.concatenate(names), np.concatenate(dists)


def identification_examples(
    vectors: np.ndarray, labels: np.ndarray, model: StrangerModel
) -> tuple[np.ndarray, np.ndarray]:
    """Open-set probes of a labelled set (one template per person with 2+ images; their other images and
    the single-image people as probes): (nearest distance minus the model's FPIR threshold for that
    gallery, whether the nearest person is the probe's)."""
    split = open_set_indices(labels, 1)
    probes = np.r_[split.known, split.strangers]
    names, dists = nearest_people(vectors, split, probes, k=1)
    truth = np.r_[split.known_labels, np.full(len(split.strangers), "")]
    limit = model.threshold({1: len(np.unique(split.gallery_labels))})
    return dists[:, 0] - limit, names[:, 0] == truth


def fit_stranger_model(vectors: np.ndarray, labels: Sequence[str], *, source: str = "") -> StrangerModel:
    """The stranger model of one embedder from labelled embeddings (LFW View 1's training people)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    lab = np.asarray(labels)
    tail = fit_tail(*impostor_cdf(x, lab))
    shifts = np.array([template_shift(x, lab, k, tail) for k in SHIFT_TEMPLATES])
    doublings = np.log2(np.array(SHIFT_TEMPLATES) / 2)
    per_doubling, shift_2 = np.polyfit(doublings, shifts, 1)
    draft = StrangerModel(tail, float(shift_2), float(per_doubling), 1.0, "")
    offset, right = identification_examples(x, lab, draft)
    slope = balanced_slope(offset, right)
    n_people = len(np.unique(lab))
    return StrangerModel(
        tail,
        float(shift_2),
        float(per_doubling),
        slope,
        source or f"{n_people} people, {len(lab)} images",
    )
