"""Exact nearest-neighbour search over all templates of one embedder, vectorised with NumPy.

Embeddings are L2-normalised, so the Euclidean distance follows from one matrix product:
``d² = 2 − 2·(q · g)``. A person's templates are combined in one of two ways (``combine``):

- ``"mean"`` (default): the distance to the re-normalised mean of their templates;
- ``"nearest"``: the distance of their nearest template.

"mean" was chosen by measurement: it identifies more people at the same rate of strangers accepted
(bench/bench_identify_lfw.py; the figures are in docs/gallery.md, "Matching"). A mean sits closer to
every face than single templates do, so at a fixed threshold it also accepts more strangers: the
threshold (calibrated on single pairs) is the knob for that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from faceprint.gallery.store import TemplateMatrix

Combine = Literal["nearest", "mean"]
COMBINE_CHOICES: tuple[str, ...] = ("nearest", "mean")

# Queries are scored in blocks so that the (queries x templates) similarity block stays ~128 MB.
_BLOCK_FLOATS = 32_000_000


@dataclass(frozen=True)
class Candidate:
    """A gallery person near a probe face."""

    person_id: int
    name: str
    distance: float


class MatchIndex:
    """Exact search structure for one embedder's templates, grouped by person."""

    def __init__(self, matrix: TemplateMatrix, combine: Combine = "mean") -> None:
        if combine not in COMBINE_CHOICES:
            raise ValueError(f"combine must be one of {COMBINE_CHOICES}, got {combine!r}")
        self.combine = combine
        self.embedder = matrix.embedder
        order = np.argsort(matrix.person_ids, kind="stable")
        persons = matrix.person_ids[order]
        vectors = matrix.embeddings[order]
        # What each searched row is (ann.py mirrors the rows): a template ("nearest") or a person ("mean").
        self._row_keys, self._row_persons = matrix.template_ids[order], persons
        self.person_ids, self._starts, counts = np.unique(persons, return_index=True, return_counts=True)
        # {templates per person: people}: what the open-set threshold of this gallery depends on.
        self.template_counts: dict[int, int] = {
            int(k): int(n) for k, n in zip(*np.unique(counts, return_counts=True), strict=True)
        }
        if combine == "mean" and vectors.size:
            sums = np.add.reduceat(vectors, self._starts, axis=0)
            vectors = sums / np.linalg.norm(sums, axis=1, keepdims=True)
            self._starts = np.arange(len(self.person_ids))
            self._row_keys = self._row_persons = self.person_ids
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        # One template per person: the per-person reduction is the identity and is skipped.
        self._grouped = len(self._vectors) > len(self.person_ids)

    @property
    def dim(self) -> int:
        return self._vectors.shape[1] if self._vectors.ndim == 2 else 0

    def __len__(self) -> int:
        """Number of people."""
        return len(self.person_ids)

    @property
    def n_rows(self) -> int:
        """Number of vectors a query is compared with (people for "mean", templates for "nearest")."""
        return len(self._vectors)

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The searched rows: (keys: person ids for "mean", template ids for "nearest"; their people;
        their vectors (N, D))."""
        return np.asarray(self._row_keys, np.int64), np.asarray(self._row_persons, np.int64), self._vectors

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest people of each query: (person ids (M, k'), distances (M, k')), nearest
        first, with ``k' = min(k, number of people)``."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n_people = len(self.person_ids)
        k = min(max(k, 1), n_people)
        ids = np.zeros((len(q), k), np.int64)
        dist = np.zeros((len(q), k), np.float32)
        if n_people == 0 or len(q) == 0:
            return ids, dist
        block = max(1, _BLOCK_FLOATS // len(self._vectors))
        for lo in range(0, len(q), block):
            sims = q[lo : lo + block] @ self._vectors.T
            if self._grouped:
                sims = np.maximum.reduceat(sims, self._starts, axis=1)
            if k < n_people:
                top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(n_people), (len(sims), n_people))
            top_sims = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-top_sims, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            top_sims = np.take_along_axis(top_sims, order, axis=1)
            ids[lo : lo + block] = self.person_ids[top]
            dist[lo : lo + block] = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * top_sims))
        return ids, dist
