"""LFW embeddings split by View 1's people files, for the open-set calibration and benchmark: every
calibration is fitted on ``peopleDevTrain`` and every open-set figure reported on the other people."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
LFW = DATA / "lfw" / "lfw-deepfunneled"
PROTOCOL = DATA / "lfw" / "protocol"


@dataclass(frozen=True)
class LfwEmbeddings:
    paths: tuple[Path, ...]
    labels: np.ndarray  # (N,) person names
    vectors: np.ndarray  # (N, D) float32
    found: np.ndarray  # (N,) a face was detected
    version: str  # embedder version
    train: np.ndarray  # (N,) the person is one of View 1's training people

    def part(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, labels) of the training people (True) or of everyone else (False)."""
        keep = self.train == train
        return self.vectors[keep], self.labels[keep]


def embedding_cache(path: Path | None):
    """The given cache file, else the benchmarks' cache keyed by the pipeline's code (bench/provenance)."""
    from faceprint.evaluation.cache import EmbeddingCache

    if path is not None:
        return EmbeddingCache(path)
    from provenance import pipeline_cache

    return pipeline_cache()


def lfw_embeddings(
    spec: str = "default:", cache: Path | None = None, every: int = 1, cached_train: bool = False
) -> LfwEmbeddings:
    """Every LFW image through one pipeline configuration (``PipelineConfig.parse`` syntax), cached;
    ``every``: only every ``every``-th person by name (the subset bench_search.py uses);
    ``cached_train``: of the training people, only the images already in the cache (a partial fit where
    embedding all 9,525 is too slow; the held-out people always come whole)."""
    from faceprint.evaluation.pairs import read_lfw_people
    from faceprint.evaluation.runner import EmbeddingRunner, ImageSource, PipelineConfig
    from faceprint.io import labelled_images

    train = set(read_lfw_people(PROTOCOL / "peopleDevTrain.txt"))
    people = dict(list(labelled_images(LFW).items())[::every])
    runner = EmbeddingRunner(PipelineConfig.parse(spec), cache=embedding_cache(cache))
    if cached_train:
        keys = {p: ImageSource.from_path(p).key for name in train for p in people.get(name, [])}
        have = set(runner.cache.get_embeddings(runner.config_key, list(keys.values())))
        kept = {n: [p for p in images if n not in train or keys[p] in have] for n, images in people.items()}
        people = {name: images for name, images in kept.items() if images}
        print(f"training people: {sum(len(people.get(n, [])) for n in train)} cached images used")
    paths = tuple(p for images in people.values() for p in images)
    labels = np.array([name for name, images in people.items() for _ in images])
    run = runner.embed_paths(paths)
    return LfwEmbeddings(
        paths,
        labels,
        run.vectors,
        run.found,
        runner.analyzer.embedder.version,
        np.array([n in train for n in labels]),
    )
