"""The evaluation API: verification on pairs, open-set identification, comparisons of configurations.

    from faceprint.evaluation.protocols import evaluate_pairs, read_lfw_pairs
    result = evaluate_pairs(read_lfw_pairs("pairs.txt", "lfw-deepfunneled"))
    print(result.metrics.folded.mean, result.metrics.roc.auc)

Embeddings of one image set come from :class:`~faceprint.evaluation.runner.EmbeddingRunner`, cached, so
a rerun, a second protocol or a second configuration sharing the detector costs little.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceprint.evaluation import EvaluationError
from faceprint.evaluation.cache import EmbeddingCache
from faceprint.evaluation.identification import (
    IdentificationMetrics,
    IdentificationSplit,
    identification_metrics,
    open_set_split,
)
from faceprint.evaluation.metrics import (
    DEFAULT_FAR_TARGETS,
    VerificationMetrics,
    best_threshold,
    roc,
    verification_metrics,
)
from faceprint.evaluation.pairs import PairSet, folder_pairs, read_lfw_pairs
from faceprint.evaluation.runner import EmbeddingRun, EmbeddingRunner, ImageSource, PipelineConfig
from faceprint.evaluation.slices import CORRUPTIONS, YAW_BUCKETS, SliceResult, yaw_bucket_label
from faceprint.quality import yaw_degrees

__all__ = [
    "IdentificationResult",
    "PipelineConfig",
    "VerificationResult",
    "evaluate_folder",
    "evaluate_identification",
    "evaluate_lfw",
    "evaluate_pairs",
    "folder_pairs",
    "open_set_split",
    "pair_metrics",
    "read_lfw_pairs",
]

CacheArg = EmbeddingCache | bool


def _cache(cache: CacheArg) -> EmbeddingCache | None:
    if isinstance(cache, EmbeddingCache):
        return cache
    return EmbeddingCache() if cache else None


def pair_metrics(
    pairs: PairSet,
    embeddings: Mapping[Path, np.ndarray],
    *,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
    threshold: float | None = None,
) -> VerificationMetrics:
    """Verification metrics from ready embeddings (e.g. a model in training), folds from the pair set."""
    folds = pairs.folds if pairs.n_folds >= 2 else None
    return verification_metrics(
        pairs.distances(embeddings), pairs.same, folds=folds, far_targets=far_targets, threshold=threshold
    )


@dataclass(frozen=True)
class VerificationResult:
    config: PipelineConfig
    pairs: PairSet
    distances: np.ndarray = field(repr=False)
    metrics: VerificationMetrics
    embeddings: EmbeddingRun
    slices: tuple[SliceResult, ...] = ()

    @property
    def threshold(self) -> float:
        """The threshold of the confusion matrix and the failure lists."""
        return self.metrics.confusion.threshold

    @property
    def no_face_images(self) -> tuple[str, ...]:
        return tuple(n for n, f in zip(self.embeddings.names, self.embeddings.found, strict=True) if not f)

    def worst(self, count: int = 10) -> tuple[list[int], list[int]]:
        """Indices of the ``count`` worst false accepts (closest different-person pairs that passed) and
        false rejects (farthest same-person pairs that failed) at :attr:`threshold`."""
        same, d, t = self.pairs.same, self.distances, self.threshold
        fa = np.nonzero(~same & (d <= t))[0]
        fr = np.nonzero(same & (d > t))[0]
        return fa[np.argsort(d[fa])][:count].tolist(), fr[np.argsort(-d[fr])][:count].tolist()

    def to_dict(self) -> dict:
        return {
            "protocol": "verification",
            "source": self.pairs.source,
            "config": {"label": self.config.label, "description": self.config.describe()},
            "images": len(self.embeddings.names),
            "no_face_images": len(self.no_face_images),
            "embedded_now": self.embeddings.embedded,
            "seconds": self.embeddings.seconds,
            "metrics": self.metrics.to_dict(),
            "slices": [s.to_dict() for s in self.slices],
        }


def evaluate_pairs(
    pairs: PairSet,
    config: PipelineConfig | None = None,
    *,
    cache: CacheArg = True,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
    threshold: float | None = None,
    slices: bool = False,
    slice_pairs: int = 600,
    seed: int = 0,
    progress: bool = True,
) -> VerificationResult:
    """Verification protocol on ``pairs``. ``threshold`` fixes the confusion matrix's operating point
    (default: the best one on all pairs). ``slices`` adds the robustness slices, computed on a balanced
    sample of ``slice_pairs`` pairs (each corruption re-runs the pipeline on one image per pair)."""
    config = config or PipelineConfig()
    runner = EmbeddingRunner(config, cache=_cache(cache), progress=progress)
    images = pairs.images
    run = runner.embed_paths(images)
    by_path = dict(zip(images, run.vectors, strict=True))
    metrics = pair_metrics(pairs, by_path, far_targets=far_targets, threshold=threshold)
    distances = pairs.distances(by_path)
    slice_results: tuple[SliceResult, ...] = ()
    if slices:
        slice_results = _slices(runner, pairs, run, distances, metrics.confusion.threshold, slice_pairs, seed)
    return VerificationResult(config, pairs, distances, metrics, run, slice_results)


def evaluate_lfw(pairs_file: Path | str, images_root: Path | str, **kwargs) -> VerificationResult:
    """Verification on an LFW-format pairs file (see :func:`read_lfw_pairs`), with its folds."""
    return evaluate_pairs(read_lfw_pairs(pairs_file, images_root), **kwargs)


def evaluate_folder(
    root: Path | str, *, n_pairs: int = 6000, seed: int = 0, n_folds: int = 10, **kwargs
) -> VerificationResult:
    """Verification on balanced pairs generated from ROOT/NAME/*.jpg (see :func:`folder_pairs`)."""
    return evaluate_pairs(folder_pairs(root, n_pairs, seed=seed, n_folds=n_folds), seed=seed, **kwargs)


def _slice_sample(pairs: PairSet, count: int, seed: int) -> np.ndarray:
    """Indices of a balanced, seeded sample of pairs (all of them when there are fewer)."""
    rng = np.random.default_rng(seed)
    same = pairs.same
    picked = [np.sort(rng.permutation(np.nonzero(same == flag)[0])[: count // 2]) for flag in (True, False)]
    return np.sort(np.concatenate(picked))


def _slice_result(name: str, d: np.ndarray, same: np.ndarray, threshold: float, no_face: int) -> SliceResult:
    both = 0 < same.sum() < same.size
    return SliceResult(
        name=name,
        pairs=int(same.size),
        accuracy=float(np.mean((d <= threshold) == same)) if same.size else float("nan"),
        auc=roc(d, same).auc if both else None,
        best_accuracy=best_threshold(d, same).accuracy if both else None,
        same_distance=float(np.median(d[same])) if same.any() else None,
        no_face=no_face,
    )


def _slices(
    runner: EmbeddingRunner,
    pairs: PairSet,
    run: EmbeddingRun,
    distances: np.ndarray,
    threshold: float,
    count: int,
    seed: int,
) -> tuple[SliceResult, ...]:
    index = {name: i for i, name in enumerate(run.names)}
    same = pairs.same
    sample = _slice_sample(pairs, count, seed)
    results = [_slice_result("clean (sample)", distances[sample], same[sample], threshold, 0)]
    a_vecs = np.stack([run.vectors[index[str(pairs.pairs[k].a)]] for k in sample])
    b_images = list(dict.fromkeys(str(pairs.pairs[k].b) for k in sample))
    from faceprint.io import load_image

    for name, corrupt in CORRUPTIONS.items():
        sources = [
            ImageSource.from_array(f"{b} [{name}]", corrupt(load_image(b), run.landmarks[index[b]]))
            for b in b_images
        ]
        corrupted = runner.embed_sources(sources)
        by_b = dict(zip(b_images, corrupted.vectors, strict=True))
        b_vecs = np.stack([by_b[str(pairs.pairs[k].b)] for k in sample])
        d = np.linalg.norm(a_vecs - b_vecs, axis=1)
        results.append(_slice_result(name, d, same[sample], threshold, int((~corrupted.found).sum())))
    # Yaw buckets over all pairs: a pair falls in the bucket of its more turned face.
    yaw = yaw_degrees(run.landmarks)
    pair_yaw = np.array([max(yaw[index[str(p.a)]], yaw[index[str(p.b)]]) for p in pairs.pairs])
    for lo, hi in YAW_BUCKETS:
        inside = (pair_yaw >= lo) & (pair_yaw < hi)
        if inside.any():
            results.append(
                _slice_result(yaw_bucket_label(lo, hi), distances[inside], same[inside], threshold, 0)
            )
    return tuple(results)


@dataclass(frozen=True)
class IdentificationResult:
    config: PipelineConfig
    split: IdentificationSplit
    metrics: IdentificationMetrics
    embeddings: EmbeddingRun

    def to_dict(self) -> dict:
        return {
            "protocol": "open-set identification",
            "source": self.split.source,
            "config": {"label": self.config.label, "description": self.config.describe()},
            "images": len(self.embeddings.names),
            "no_face_images": int((~self.embeddings.found).sum()),
            "embedded_now": self.embeddings.embedded,
            "seconds": self.embeddings.seconds,
            "metrics": self.metrics.to_dict(),
        }


def evaluate_identification(
    root: Path | str,
    config: PipelineConfig | None = None,
    *,
    cache: CacheArg = True,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
    progress: bool = True,
    exclude: Collection[Path] = frozenset(),
) -> IdentificationResult:
    """Open-set identification on ROOT/NAME/*.jpg with the split of :func:`open_set_split` (images in
    ``exclude`` left out)."""
    config = config or PipelineConfig()
    split = open_set_split(root, exclude)
    run = EmbeddingRunner(config, cache=_cache(cache), progress=progress).embed_paths(split.images)
    g, k = len(split.gallery), len(split.known)
    metrics = identification_metrics(
        run.vectors[:g],
        [n for n, _ in split.gallery],
        run.vectors[g : g + k],
        [n for n, _ in split.known],
        run.vectors[g + k :],
        far_targets=far_targets,
    )
    return IdentificationResult(config, split, metrics, run)


def compare_pairs(pairs: PairSet, configs: Sequence[PipelineConfig], **kwargs) -> list[VerificationResult]:
    """:func:`evaluate_pairs` for each configuration on the same pairs (labels must differ)."""
    labels = [c.label for c in configs]
    if len(set(labels)) != len(labels):
        raise EvaluationError(f"configuration labels must be unique, got {', '.join(labels)}")
    return [evaluate_pairs(pairs, c, **kwargs) for c in configs]
