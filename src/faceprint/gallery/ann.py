"""Approximate nearest-neighbour search for large embedded galleries: an HNSW graph (hnswlib) over the
vectors exact search would scan, kept in a folder beside the SQLite file (``gallery.sqlite3.index/``).

Below ``ANN_MIN_VECTORS`` searched vectors, exact NumPy search (``MatchIndex``) is as fast and exact, so
it stays; above, the index answers. Why hnswlib: measured against usearch, FAISS HNSW and FAISS IVF-Flat
(numbers in docs/scale.md) it built fastest and searched fastest at the same recall, and it can overwrite
an element's vector in place, which is what erasing a deleted person from the index file needs (FAISS's
HNSW cannot remove at all; usearch and hnswlib's own ``mark_deleted`` leave the vector's bytes behind).

The index mirrors exactly what ``MatchIndex`` searches: one vector per person (``combine="mean"``, the
normalised mean of their templates) or one per template (``"nearest"``). It is brought up to date with
the store whenever the store's generation moves (enrolment or deletion by any process): the store's
vectors are compared with the index's by a per-row checksum and only the rows that changed are added,
erased or replaced; the graph is rebuilt only when it is missing, damaged, of another library version
or mostly deleted slots. A deleted row's vector is overwritten with a random unit vector before it is
marked deleted, so neither the search nor the saved file has it any more.

Two files per embedder version and combine mode, both written atomically (``write_atomic``): the graph
(``NAME@VERSION.COMBINE.hnsw``) and its bookkeeping (``….npz``: rows, checksums, generation, and the
graph file's SHA-256, so a graph that does not belong to its bookkeeping, or is damaged, is never
loaded). hnswlib is an optional dependency (``faceprint[ann]``): without it every gallery is searched
exactly, as before.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceprint.errors import GalleryError
from faceprint.gallery.matching import Combine, MatchIndex
from faceprint.models import write_atomic
from faceprint.types import EmbedderKey

# Searched vectors from which the HNSW index replaces exact search: the first size at which the graph
# answered a query clearly faster than exact NumPy search (bench/bench_search.py --crossover, docs/scale.md);
# below it the two are within noise of each other, and exact search is exact and needs no index files.
ANN_MIN_VECTORS = 10_000
# Graph parameters, chosen by bench/bench_search.py (docs/scale.md): the smallest search width that held
# recall@1 >= 0.995 on its probes at 100k people, under 1 ms a query there.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 512
# Rebuild from scratch when more than this fraction of the graph's slots are erased (deleted) rows.
_MAX_DELETED_FRACTION = 0.5
# Save after adding rows once this many were added since the last save (deletions save at once).
_SAVE_EVERY_ADDED = 0.01
FORMAT = 1


def available() -> bool:
    """Whether the optional ANN library (``faceprint[ann]``) is installed."""
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        return False
    return True


def index_folder(gallery_path: Path) -> Path:
    """Where the ANN indexes of a SQLite gallery live: ``gallery.sqlite3.index/`` beside it."""
    return gallery_path.with_name(gallery_path.name + ".index")


def _stem(key: EmbedderKey, combine: Combine) -> str:
    safe = re.sub(r"[^A-Za-z0-9._@-]", "_", f"{key.name}@{key.version}")
    return f"{safe}.{combine}"


_MIX: dict[int, np.ndarray] = {}


def row_checksums(vectors: np.ndarray, persons: np.ndarray) -> np.ndarray:
    """A 64-bit checksum of each row (its float32 bytes and its person): whether a row changed.

    Hand-written: a vectorised multiply-add of the row's 32-bit words with fixed odd 64-bit constants
    (wrapping), fast enough for a million rows at every generation change; not a cryptographic hash
    (it only has to notice changes, nobody is choosing vectors to collide)."""
    dim = vectors.shape[1]
    if dim not in _MIX:
        _MIX[dim] = np.random.default_rng(0x46505254).integers(1, 2**63, dim, dtype=np.uint64) | np.uint64(1)
    mix = _MIX[dim]
    words = np.ascontiguousarray(vectors, dtype="<f4").view("<u4")
    out = np.empty(len(vectors), np.uint64)
    for lo in range(0, len(vectors), 65536):
        block = words[lo : lo + 65536].astype(np.uint64)
        out[lo : lo + 65536] = (block * mix).sum(axis=1, dtype=np.uint64)
    return out ^ (persons.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def _row_ids(keys: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """One 64-bit number per (key, checksum) pair, to compare row sets with ``np.isin``."""
    return sums ^ (keys.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))


@dataclass(frozen=True)
class SyncReport:
    """What bringing an index up to date did."""

    added: int
    removed: int
    rebuilt: bool
    saved: bool


class AnnIndex:
    """HNSW search over one embedder version's vectors, with ``MatchIndex``'s interface.

    Rows are identified by a key: the person id (``combine="mean"``) or the template id (``"nearest"``).
    Graph labels are never reused (a counter), so an erased slot can be taken by a new row safely."""

    def __init__(self, folder: Path, key: EmbedderKey, combine: Combine) -> None:
        self.folder = folder
        self.embedder = key
        self.combine: Combine = combine
        self.generation = -1
        self.template_counts: dict[int, int] = {}
        self._graph: Any = None
        self._dim = 0
        self._n_people = 0
        self._next_label = 0
        # Live rows, sorted by label: label, key, person, checksum.
        self._labels = np.zeros(0, np.int64)
        self._keys = np.zeros(0, np.int64)
        self._persons = np.zeros(0, np.int64)
        self._sums = np.zeros(0, np.uint64)
        self._max_per_person = 1
        self._added_since_save = 0
        # Searches and updates of one index take turns (the service searches from several threads while
        # another one brings the index up to date; the row arrays and the graph change together).
        self._lock = threading.RLock()

    # -- files --------------------------------------------------------------------------------

    @property
    def graph_path(self) -> Path:
        return self.folder / f"{_stem(self.embedder, self.combine)}.hnsw"

    @property
    def meta_path(self) -> Path:
        return self.folder / f"{_stem(self.embedder, self.combine)}.npz"

    def _library(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "hnswlib": importlib.metadata.version("hnswlib"),
            "space": "ip",
            "M": HNSW_M,
            "ef_construction": HNSW_EF_CONSTRUCTION,
        }

    @classmethod
    def load(cls, folder: Path, key: EmbedderKey, combine: Combine) -> AnnIndex | None:
        """The saved index, or None when there is none or it cannot be trusted (damaged, written by
        another library version, graph and bookkeeping not of one save): it is then rebuilt."""
        import hnswlib

        index = cls(folder, key, combine)
        try:
            with np.load(index.meta_path, allow_pickle=False) as meta:
                info = json.loads(str(meta["info"]))
                arrays = {name: meta[name] for name in ("labels", "keys", "persons", "sums")}
            if info.get("library") != index._library() or info.get("embedder") != [key.name, key.version]:
                return None
            graph_bytes = index.graph_path.read_bytes()
            if hashlib.sha256(graph_bytes).hexdigest() != info["graph_sha256"]:
                return None
            del graph_bytes
            graph = hnswlib.Index(space="ip", dim=int(info["dim"]))
            graph.load_index(str(index.graph_path), allow_replace_deleted=True)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return None
        index._graph = graph
        index._dim = int(info["dim"])
        index.generation = int(info["generation"])
        index._n_people = int(info["n_people"])
        index._next_label = int(info["next_label"])
        index.template_counts = {int(k): int(v) for k, v in info["template_counts"].items()}
        index._max_per_person = max(index.template_counts, default=1)
        index._labels = arrays["labels"].astype(np.int64)
        index._keys = arrays["keys"].astype(np.int64)
        index._persons = arrays["persons"].astype(np.int64)
        index._sums = arrays["sums"].astype(np.uint64)
        return index

    def save(self) -> None:
        """Write the graph, then its bookkeeping (which names the graph's hash), each atomically."""
        with self._lock:
            self._save()

    def _save(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(self.graph_path, self._graph.save_index)
            digest = hashlib.sha256(self.graph_path.read_bytes()).hexdigest()
            info = {
                "library": self._library(),
                "embedder": [self.embedder.name, self.embedder.version],
                "combine": self.combine,
                "dim": self._dim,
                "generation": self.generation,
                "n_people": self._n_people,
                "next_label": self._next_label,
                "template_counts": {str(k): v for k, v in self.template_counts.items()},
                "graph_sha256": digest,
            }

            def write(tmp: str) -> None:
                with open(tmp, "wb") as f:
                    np.savez(
                        f,
                        info=np.array(json.dumps(info)),
                        labels=self._labels,
                        keys=self._keys,
                        persons=self._persons,
                        sums=self._sums,
                    )

            write_atomic(self.meta_path, write)
        except OSError as err:
            raise GalleryError(
                f"{self.folder}: cannot write the search index ({err.strerror or err})"
            ) from err
        self._added_since_save = 0

    def save_if_changed(self) -> None:
        """Save rows added since the last save (on closing the gallery)."""
        with self._lock:
            if self._added_since_save and self._graph is not None:
                self.save()

    def remove_files(self) -> None:
        for path in (self.meta_path, self.graph_path):
            path.unlink(missing_ok=True)

    # -- keeping up with the store ------------------------------------------------------------

    def sync(self, exact: MatchIndex, generation: int, *, save: bool = True) -> SyncReport:
        """Make the index hold exactly the rows of ``exact`` (the store's current vectors), changing
        only what differs; save when a row was erased (so the file holds no deleted vector), when the
        file is new, or when enough rows were added since the last save."""
        with self._lock:
            return self._sync(exact, generation, save)

    def _sync(self, exact: MatchIndex, generation: int, save: bool) -> SyncReport:
        keys, persons, vectors = exact.rows()
        sums = row_checksums(vectors, persons)
        rebuilt = self._graph is None or self._dim != vectors.shape[1]
        if not rebuilt:
            # Erased rows in the graph (the slots new rows have not taken yet) beyond a fraction: rebuild.
            slots = self._graph.get_current_count()
            rebuilt = slots > 0 and (slots - len(self._labels)) / slots > _MAX_DELETED_FRACTION
        if rebuilt:
            self._rebuild(keys, persons, vectors, sums)
            added, removed = len(keys), 0
        else:
            added, removed = self._apply(keys, persons, vectors, sums)
        self.generation = generation
        self._n_people = len(exact)
        self.template_counts = dict(exact.template_counts)
        self._max_per_person = max(self.template_counts, default=1)
        self._added_since_save += added
        must_save = (
            rebuilt
            or removed > 0
            or not self.meta_path.exists()
            or self._added_since_save > _SAVE_EVERY_ADDED * max(len(self._labels), 1)
        )
        if save and must_save:
            self.save()
        return SyncReport(added, removed, rebuilt, save and must_save)

    def _rebuild(self, keys: np.ndarray, persons: np.ndarray, vectors: np.ndarray, sums: np.ndarray) -> None:
        import hnswlib

        graph = hnswlib.Index(space="ip", dim=vectors.shape[1])
        graph.init_index(
            max(1024, int(len(vectors) * 1.25)),
            M=HNSW_M,
            ef_construction=HNSW_EF_CONSTRUCTION,
            random_seed=100,
            allow_replace_deleted=True,
        )
        labels = np.arange(len(vectors), dtype=np.int64)
        if len(vectors):
            # Inserted in a random order: in store order (oldest first), people enrolled first were
            # reached less often by later searches (bench/bench_search.py: recall@1 0.970 -> 0.990 at 100k).
            order = np.random.default_rng(len(vectors)).permutation(len(vectors))
            graph.add_items(vectors[order], labels[order])
        self._graph, self._dim, self._next_label = graph, vectors.shape[1], len(vectors)
        self._labels, self._keys, self._persons, self._sums = labels, keys, persons, sums

    def _apply(
        self, keys: np.ndarray, persons: np.ndarray, vectors: np.ndarray, sums: np.ndarray
    ) -> tuple[int, int]:
        # A row is kept when its key is still there with the same checksum (same vector, same person);
        # every other old row is erased and every other new row added under a fresh label.
        new_ids, old_ids = _row_ids(keys, sums), _row_ids(self._keys, self._sums)
        fresh = ~np.isin(new_ids, old_ids)
        gone = ~np.isin(old_ids, new_ids)
        gone_labels = self._labels[gone]
        if len(gone_labels):
            # Overwrite the vectors before marking them deleted: hnswlib keeps a deleted element's data.
            noise = np.random.default_rng().standard_normal((len(gone_labels), self._dim)).astype(np.float32)
            noise /= np.linalg.norm(noise, axis=1, keepdims=True)
            self._graph.add_items(noise, gone_labels)
            for label in gone_labels.tolist():
                self._graph.mark_deleted(label)
        n_new = int(fresh.sum())
        if n_new:
            free = self._graph.get_max_elements() - self._graph.get_current_count()
            # New rows fill erased slots first (replace_deleted); grow when those and the spare run out.
            erased = self._graph.get_current_count() - (len(self._labels) - len(gone_labels))
            if n_new > free + erased:
                self._graph.resize_index(int((self._graph.get_current_count() + n_new) * 1.25))
            new_labels = np.arange(self._next_label, self._next_label + n_new, dtype=np.int64)
            self._next_label += n_new
            self._graph.add_items(vectors[fresh], new_labels, replace_deleted=True)
        else:
            new_labels = np.zeros(0, np.int64)
        keep = ~gone
        self._labels = np.concatenate([self._labels[keep], new_labels])
        self._keys = np.concatenate([self._keys[keep], keys[fresh]])
        self._persons = np.concatenate([self._persons[keep], persons[fresh]])
        self._sums = np.concatenate([self._sums[keep], sums[fresh]])
        return n_new, len(gone_labels)

    # -- search (MatchIndex's interface) ------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        """Number of people."""
        return self._n_people

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest people of each query: (person ids (M, k'), distances (M, k')), nearest
        first, ``k' = min(k, number of people)``; as ``MatchIndex.search``, approximately."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(max(k, 1), self._n_people)
        ids = np.zeros((len(q), k), np.int64)
        dist = np.zeros((len(q), k), np.float32)
        if k == 0 or len(q) == 0:
            return ids, dist
        with self._lock:
            # "nearest": a person has at most max_per_person rows, so the k * max nearest rows hold k people.
            n_rows = min(len(self._labels), k if self.combine == "mean" else k * self._max_per_person)
            labels, ip_dist = self._query(q, n_rows)
            rows = np.searchsorted(self._labels, labels.astype(np.int64))
            persons = self._persons[rows]
        euclid = np.sqrt(np.maximum(0.0, 2.0 * ip_dist))  # hnswlib "ip" distance is 1 - q·g
        for i in range(len(q)):
            _, first = np.unique(persons[i], return_index=True)
            first = np.sort(first)[:k]  # the nearest row of each person, in distance order
            ids[i, : len(first)] = persons[i, first]
            dist[i, : len(first)] = euclid[i, first]
        return ids, dist

    def _query(self, q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        ef = max(HNSW_EF_SEARCH, n)
        while True:
            self._graph.set_ef(ef)
            try:
                return self._graph.knn_query(q, k=n, num_threads=1 if len(q) == 1 else -1)
            except RuntimeError:
                # Too few live elements reached (many erased ones around): widen the search.
                if ef >= self._graph.get_current_count():
                    raise
                ef *= 4

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, persons) of the live rows (for tests and tools)."""
        return self._keys.copy(), self._persons.copy()


def searcher(
    folder: Path | None,
    key: EmbedderKey,
    combine: Combine,
    generation: int,
    exact_of: Any,
    held: AnnIndex | None = None,
) -> MatchIndex | AnnIndex:
    """The index to search one embedder version with: exact below ``ANN_MIN_VECTORS`` rows (or without
    hnswlib, or without a folder), else the HNSW index, loaded (``held`` in memory, else from
    ``folder``) and brought up to date with the store at ``generation``; ``exact_of()`` builds the
    exact ``MatchIndex`` from the store (read only when needed)."""
    if folder is None or not available():
        return exact_of()
    ann = held if held is not None else AnnIndex.load(folder, key, combine)
    if ann is not None and ann.generation == generation:
        return ann
    exact = exact_of()
    if exact.n_rows < ANN_MIN_VECTORS:
        if ann is not None:
            ann.remove_files()  # the gallery shrank: exact search again, and no vectors left behind
        return exact
    ann = ann or AnnIndex(folder, key, combine)
    ann.sync(exact, generation)
    return ann


def refresh_folder(folder: Path, generation: int, exact_of: Any, held: dict[Any, AnnIndex]) -> None:
    """Bring every index saved in ``folder`` up to date with the store (after a deletion: the files must
    not keep a deleted row); ``exact_of(key, combine)`` builds an exact index from the store."""
    if not folder.is_dir():
        return
    for meta in sorted(folder.glob("*.npz")):
        try:
            with np.load(meta, allow_pickle=False) as saved:
                info = json.loads(str(saved["info"]))
            key, combine = EmbedderKey(*info["embedder"]), info["combine"]
        except (OSError, ValueError, KeyError, TypeError):
            meta.unlink(missing_ok=True)  # unreadable: nothing can use it, and it may hold vectors
            meta.with_suffix(".hnsw").unlink(missing_ok=True)
            continue
        index = held.get((key, combine))
        if index is None and not available():
            # Without hnswlib the index cannot be updated; remove it rather than keep deleted vectors.
            meta.with_suffix(".hnsw").unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            continue
        index = searcher(folder, key, combine, generation, lambda k=key, c=combine: exact_of(k, c), index)
        if isinstance(index, AnnIndex):
            held[(key, combine)] = index
        else:
            held.pop((key, combine), None)
