"""``Gallery``: people and their face templates, searchable, on any ``GalleryStore``."""

from __future__ import annotations

import base64
import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from platformdirs import user_data_dir

from faceprint.errors import GalleryError
from faceprint.gallery import ann
from faceprint.gallery.matching import Candidate, Combine, MatchIndex
from faceprint.gallery.sqlite import SQLiteStore
from faceprint.gallery.store import (
    CORRECTION_KINDS,
    Correction,
    CorrectionKind,
    GalleryStore,
    NewCorrection,
    NewTemplate,
    Person,
    Template,
    TemplateMatrix,
    open_store,
)
from faceprint.models import write_atomic
from faceprint.names import person_name
from faceprint.thresholds import (
    DEFAULT_TARGET_FPIR,
    Calibration,
    builtin_calibration,
    calibration_for,
    checked_threshold,
)
from faceprint.types import EmbedderKey

EXPORT_FORMAT = "faceprint-gallery"
EXPORT_VERSION = 1

PersonRef = int | str  # a person id or name


def replace_person(correction: Correction, person_id: int) -> NewCorrection:
    """The same correction filed under another person (merging people keeps their corrections)."""
    return NewCorrection(
        person_id, correction.kind, correction.embedder, correction.embedding, correction.content_hash
    )


def default_gallery_path() -> Path:
    """$FACEPRINT_GALLERY, else ``gallery.sqlite3`` in the user data directory."""
    env = os.environ.get("FACEPRINT_GALLERY")
    return Path(env) if env else Path(user_data_dir("faceprint")) / "gallery.sqlite3"


class DatabaseIndex:
    """Search of one embedder version done by the store itself (PostgreSQL's HNSW indexes over the
    people's means or the templates, ``PostgresStore.nearest_people``): nothing is loaded into the
    process but ``{templates per person: people}`` (an SQL aggregate), read once per store generation."""

    def __init__(self, store: Any, key: EmbedderKey, combine: Combine, counts: dict[int, int]) -> None:
        self.store, self.key, self.combine = store, key, combine
        self.template_counts = counts
        self._people = sum(counts.values())

    @property
    def dim(self) -> int:
        return self.store.dim_of(self.key) or 0

    def __len__(self) -> int:
        """Number of people."""
        return self._people

    def search_named(self, queries: np.ndarray, k: int) -> list[tuple[Candidate, ...]]:
        found = self.store.nearest_people(self.key, queries, k, self.combine)
        return [tuple(Candidate(pid, name, dist) for pid, name, dist in rows) for rows in found]


def searched_rows(counts: dict[int, int], combine: Combine) -> int:
    """How many vectors a search compares a face with: people ("mean") or templates ("nearest")."""
    return sum(counts.values()) if combine == "mean" else sum(k * n for k, n in counts.items())


def _replace_rows(old: TemplateMatrix, changed: np.ndarray, fresh: TemplateMatrix) -> TemplateMatrix:
    """``old`` without the rows of the ``changed`` template ids, plus ``fresh`` (what those ids are now),
    in template id order, as the store's ``matrix`` gives them."""
    keep = ~np.isin(old.template_ids, changed)
    parts = [(old.template_ids[keep], old.person_ids[keep], old.embeddings[keep])]
    if len(fresh.template_ids):
        parts.append((fresh.template_ids, fresh.person_ids, fresh.embeddings))
    parts = [part for part in parts if len(part[0])] or parts[:1]
    ids = np.concatenate([t for t, _, _ in parts])
    order = np.argsort(ids, kind="stable")
    return TemplateMatrix(
        old.embedder,
        ids[order],
        np.concatenate([p for _, p, _ in parts])[order],
        np.ascontiguousarray(np.concatenate([e for _, _, e in parts])[order]),
    )


class Gallery:
    """Known people and their templates. Open with :meth:`open`; usable as a context manager."""

    def __init__(
        self, store: GalleryStore, *, combine: Combine = "mean", database_search_from: int | None = None
    ) -> None:
        """``database_search_from``: searched vectors (people, or templates with ``combine="nearest"``)
        from which a store that searches itself (PostgreSQL) is searched in the database rather than
        exactly in this process (None: the store's ``database_search_from``; 0: always)."""
        self.store = store
        self.combine: Combine = combine
        self._database_search_from = database_search_from
        self._indexes: dict[
            EmbedderKey, tuple[int, MatchIndex | ann.AnnIndex | DatabaseIndex, dict[int, str]]
        ] = {}
        # The templates (and everybody's names) the exact and embedded-HNSW paths search, per embedder,
        # with the generation they were read at: brought forward through the store's change log.
        self._templates: dict[EmbedderKey, tuple[int, TemplateMatrix, dict[int, str]]] = {}
        # Large SQLite galleries are searched through an HNSW index kept beside the file (gallery/ann.py).
        self._ann_folder = ann.index_folder(store.path) if isinstance(store, SQLiteStore) else None
        self._ann: dict[tuple[EmbedderKey, str], ann.AnnIndex] = {}
        self._rejections: dict[EmbedderKey, tuple[int, np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: Path | str | None = None,
        *,
        combine: Combine = "mean",
        read_only: bool = False,
        create: bool = True,
        database_search_from: int | None = None,
    ) -> Gallery:
        """Open (or create) the gallery at ``path``: a SQLite file, or a ``postgresql://`` URL (None:
        $FACEPRINT_GALLERY, else :func:`default_gallery_path`); see :func:`open_store` for ``read_only``
        and ``create``, and the constructor for ``database_search_from``."""
        return cls(
            open_store(path, read_only=read_only, create=create),
            combine=combine,
            database_search_from=database_search_from,
        )

    @property
    def location(self) -> str:
        return self.store.location

    def close(self) -> None:
        with self._lock:
            for index in self._ann.values():
                index.save_if_changed()
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- people -------------------------------------------------------------------------------

    def add_person(self, name: str, metadata: dict[str, Any] | None = None) -> int:
        name = person_name(name)
        return self.store.add_person(name, metadata)

    def ensure_person(self, name: str, metadata: dict[str, Any] | None = None) -> int:
        """The id of the person called ``name``, created with ``metadata`` if there is none yet; safe when
        another process (a service replica, a batch worker) creates the same person at the same moment."""
        name = person_name(name)
        person = self.store.find_person(name)
        if person is not None:
            return person.id
        try:
            return self.store.add_person(name, metadata)
        except GalleryError:
            person = self.store.find_person(name)  # created by another writer meanwhile
            if person is None:
                raise
            return person.id

    def people(self) -> list[Person]:
        return self.store.people()

    def person(self, ref: PersonRef) -> Person:
        """A person by id or name; GalleryError when there is none."""
        found = self.find(ref)
        if found is None:
            raise GalleryError(f"{self.location}: no person {ref!r} in the gallery")
        return found

    def find(self, ref: PersonRef) -> Person | None:
        if isinstance(ref, int | np.integer):
            return self.store.get_person(int(ref))
        return self.store.find_person(str(ref))

    def templates(self, ref: PersonRef | None = None) -> list[Template]:
        return list(self.store.templates(None if ref is None else self.person(ref).id))

    def rename(self, ref: PersonRef, new_name: str) -> Person:
        person = self.person(ref)
        self.store.rename_person(person.id, person_name(new_name))
        return self.person(person.id)

    def merge(self, source: PersonRef, into: PersonRef) -> Person:
        """Move every template and correction of ``source`` to ``into`` (dropping duplicate templates)
        and delete ``source``."""
        src, dst = self.person(source), self.person(into)
        if src.id == dst.id:
            raise GalleryError(f"{self.location}: cannot merge {src.name!r} into itself")
        try:
            with self.store.transaction():
                for key in self.store.embedders():
                    for c in self.store.corrections(key, src.id):
                        self.store.add_correction(replace_person(c, dst.id))
                self.store.move_templates(src.id, dst.id)
                self.store.set_metadata(dst.id, {**src.metadata, **dst.metadata})
                self.store.delete_person(src.id)
        finally:
            self._erase_from_indexes()
        return self.person(dst.id)

    def delete(self, ref: PersonRef) -> int:
        """Delete a person, every template and every correction filed under them (no biometric bytes
        stay in the files); returns the number of templates."""
        person = self.person(ref)
        try:
            return self.store.delete_person(person.id)
        finally:  # also when the store's own erasure is still pending (ErasureError): the rows are gone
            self._erase_from_indexes()

    def purge(self) -> None:
        """Erase from storage what earlier deletions left there (after an ``ErasureError``: a reader that
        held an old snapshot has ended). Stores that erase as they delete have no ``purge``."""
        purge = getattr(self.store, "purge", None)
        if purge is not None:
            purge()
        self._erase_from_indexes()

    # -- templates ----------------------------------------------------------------------------

    def add_template(
        self,
        person: PersonRef,
        embedding: np.ndarray,
        *,
        embedder: str,
        embedder_version: str,
        source_path: str | Path | None = None,
        content_hash: str | None = None,
        score: float | None = None,
        face_size: float | None = None,
        quality_flags: Sequence[str] = (),
    ) -> int | None:
        """Store one embedding for a person; None if that person already has this content (dedup)."""
        vector = np.asarray(embedding, dtype=np.float32).ravel()
        norm = float(np.linalg.norm(vector))
        if vector.size == 0 or not np.all(np.isfinite(vector)) or norm == 0.0:
            raise GalleryError(f"{self.location}: refusing an empty, zero or non-finite embedding")
        return self.store.add_template(
            NewTemplate(
                person_id=self.person(person).id,
                embedder=EmbedderKey(embedder, embedder_version),
                # Renormalise only real deviations, so export/import round-trips bit for bit.
                embedding=vector if abs(norm - 1.0) < 1e-5 else vector / norm,
                source_path=None if source_path is None else str(source_path),
                content_hash=content_hash,
                detection_score=score,
                face_size=face_size,
                quality_flags=tuple(quality_flags),
            )
        )

    def delete_template(self, template_id: int) -> bool:
        try:
            return self.store.delete_template(template_id)
        finally:
            self._erase_from_indexes()

    def embedders(self) -> list[EmbedderKey]:
        return self.store.embedders()

    # -- corrections --------------------------------------------------------------------------

    def add_correction(
        self,
        person: PersonRef,
        kind: CorrectionKind,
        embedding: np.ndarray,
        embedder: EmbedderKey,
        *,
        content_hash: str | None = None,
    ) -> int:
        """File a user's verdict on a probe face: ``"reject"`` (it is not ``person``) or ``"confirm"``."""
        if kind not in CORRECTION_KINDS:
            raise GalleryError(f"correction kind must be one of {CORRECTION_KINDS}, got {kind!r}")
        vector = np.asarray(embedding, dtype=np.float32).ravel()
        norm = float(np.linalg.norm(vector))
        if vector.size == 0 or not np.all(np.isfinite(vector)) or norm == 0.0:
            raise GalleryError(f"{self.location}: refusing an empty, zero or non-finite embedding")
        return self.store.add_correction(
            NewCorrection(self.person(person).id, kind, embedder, vector / norm, content_hash)
        )

    def corrections(
        self, embedder: EmbedderKey, person: PersonRef | None = None, kind: CorrectionKind | None = None
    ) -> list[Correction]:
        pid = None if person is None else self.person(person).id
        return self.store.corrections(embedder, pid, kind)

    def delete_correction(self, correction_id: int) -> bool:
        return self.store.delete_correction(correction_id)

    def rejections(self, embedder: EmbedderKey) -> tuple[np.ndarray, np.ndarray]:
        """Every "reject" correction of one embedder as arrays: (embeddings (R, D), person ids (R,)),
        read again only when the store has changed."""
        generation = self.store.generation()
        with self._lock:
            cached = self._rejections.get(embedder)
            if cached is None or cached[0] != generation:
                found = self.store.corrections(embedder, kind="reject")
                dim = found[0].embedding.size if found else 0
                vectors = np.stack([c.embedding for c in found]) if found else np.zeros((0, dim), np.float32)
                cached = (generation, vectors, np.array([c.person_id for c in found], np.int64))
                self._rejections[embedder] = cached
            return cached[1], cached[2]

    def __len__(self) -> int:
        """Number of templates."""
        return sum(p.n_templates for p in self.people())

    # -- search -------------------------------------------------------------------------------

    def _erase_from_indexes(self) -> None:
        """After a deletion: bring every ANN index file of this gallery up to date now, so that no file
        keeps a deleted person's vectors (the store's own files are scrubbed by the store)."""
        if self._ann_folder is None:
            return
        generation = self.store.generation()
        with self._lock:
            ann.refresh_folder(
                self._ann_folder,
                generation,
                lambda key, combine: MatchIndex(self.store.matrix(key), combine),
                self._ann,
            )

    def _database_index(self, key: EmbedderKey) -> DatabaseIndex | None:
        """The store's own search when it has one (PostgreSQL) and the gallery is large enough."""
        store: Any = self.store
        if not hasattr(store, "nearest_people"):
            return None
        threshold = self._database_search_from
        counts = store.template_counts(key)
        if searched_rows(counts, self.combine) < (
            store.database_search_from if threshold is None else threshold
        ):
            return None
        return DatabaseIndex(self.store, key, self.combine, counts)

    def _index(self, key: EmbedderKey) -> tuple[MatchIndex | ann.AnnIndex | DatabaseIndex, dict[int, str]]:
        """The search index of one embedder and the people's names, brought up to date only when the
        store has changed since (any process's write changes the generation): exact for small
        galleries, the HNSW index of ``gallery/ann.py`` for large SQLite ones, the database's own HNSW
        indexes for large PostgreSQL ones (no template loaded; names come with the results)."""
        generation = self.store.generation()
        with self._lock:
            cached = self._indexes.get(key)
            if cached is None or cached[0] != generation or cached[1].combine != self.combine:
                database = self._database_index(key)
                if database is not None:
                    self._indexes[key] = cached = (generation, database, {})
                    return database, {}
                matrix, names = self._current_templates(key, generation)
                index = ann.searcher(
                    self._ann_folder,
                    key,
                    self.combine,
                    generation,
                    lambda: MatchIndex(matrix, self.combine),
                    self._ann.get((key, self.combine)),
                )
                if isinstance(index, ann.AnnIndex):
                    self._ann[(key, self.combine)] = index
                else:
                    self._ann.pop((key, self.combine), None)
                cached = (generation, index, names)
                self._indexes[key] = cached
            return cached[1], cached[2]

    def _current_templates(self, key: EmbedderKey, generation: int) -> tuple[TemplateMatrix, dict[int, str]]:
        """Every template of ``key`` and every person's name as of ``generation`` (or later). The first
        time, read whole; after that only the rows the store's change log names since the generation
        they were read at (``store.changes``), unless the log no longer reaches back that far. Templates
        first, then names: another process may commit between the reads, and people are read after
        their templates so that every template's person has a name."""
        held = self._templates.get(key)
        if held is not None and held[0] == generation:
            return held[1], held[2]
        changes = getattr(self.store, "changes", None)
        delta = changes(held[0]) if held is not None and changes is not None else None
        if held is None or delta is None:
            matrix = self.store.matrix(key)
            names = {p.id: p.name for p in self.people()}
        else:
            template_ids, person_ids = delta
            old, names = held[1], dict(held[2])
            fresh = self.store.templates_by_id(key, template_ids)  # type: ignore[attr-defined]
            matrix = _replace_rows(old, template_ids, fresh)
            for pid in person_ids.tolist():
                names.pop(pid, None)
            names.update(self.store.names(person_ids))  # type: ignore[attr-defined]
        self._templates[key] = (generation, matrix, names)
        return matrix, names

    def template_counts(self, embedder: EmbedderKey) -> dict[int, int]:
        """``{templates per person: people}`` among the people searched for this embedder, as the
        search sees them: with ``combine="nearest"`` every template counts as a person of its own."""
        index, _ = self._index(embedder)
        if self.combine == "nearest":
            total = sum(k * n for k, n in index.template_counts.items())
            return {1: total} if total else {}
        return dict(index.template_counts)

    def distances_to(self, ref: PersonRef, embeddings: np.ndarray, embedder: EmbedderKey) -> np.ndarray:
        """The distance of each embedding to one person as search measures it (to the normalised mean of
        their templates, or with ``combine="nearest"`` to the nearest one), computed exactly from that
        person's templates alone, whatever the gallery's size; inf where they have none of ``embedder``."""
        person = self.person(ref)
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        own = [t.embedding for t in self.store.templates(person.id) if t.embedder == embedder]
        if not own:
            return np.full(len(queries), np.inf)
        vectors = np.stack(own)
        if self.combine == "mean":
            total = vectors.sum(axis=0)
            sims = queries @ (total / np.linalg.norm(total))
        else:
            sims = (queries @ vectors.T).max(axis=1)
        return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims))

    def search(
        self, embeddings: np.ndarray, embedder: EmbedderKey, top_k: int = 1
    ) -> list[tuple[Candidate, ...]]:
        """The ``top_k`` nearest people of each embedding (nearest first); empty tuples if nobody is
        enrolled. Templates of another embedder are never compared: a gallery holding only those raises."""
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        index, names = self._index(embedder)
        if not len(index):
            others = [k for k in self.embedders() if k != embedder]
            if others:
                raise GalleryError(
                    f"{self.location}: the gallery holds templates of {', '.join(map(str, others))}, "
                    f"not of {embedder}; embeddings of different embedders cannot be compared "
                    "(re-enrol the people with this embedder, or use the one the gallery was built with)"
                )
            return [() for _ in queries]
        if queries.shape[1] != index.dim:
            raise GalleryError(
                f"{self.location}: query embeddings have {queries.shape[1]} dimensions, "
                f"the {embedder} templates {index.dim}"
            )
        if isinstance(index, DatabaseIndex):
            return index.search_named(queries, top_k)
        ids, dists = index.search(queries, top_k)
        return [
            tuple(
                Candidate(int(i), names.get(int(i), "?"), float(d)) for i, d in zip(row_i, row_d, strict=True)
            )
            for row_i, row_d in zip(ids, dists, strict=True)
        ]

    # -- thresholds ---------------------------------------------------------------------------

    # Settings are keyed "KIND:NAME@VERSION"; galleries written before versions were keyed "KIND:NAME" and
    # those keys still apply to every version of the embedder, as they did then.
    def _setting(self, kind: str, key: EmbedderKey) -> str | None:
        for name in (f"{kind}:{key.name}@{key.version}", f"{kind}:{key.name}"):
            value = self.store.get_setting(name)
            if value is not None:
                return value
        return None

    def set_threshold(self, key: EmbedderKey, threshold: float | None) -> None:
        """This gallery's own threshold for an embedder version (None: back to the calibrated one)."""
        threshold = checked_threshold(threshold)
        with self.store.transaction():
            if threshold is None:
                self.store.set_setting(f"threshold:{key.name}", None)
            self.store.set_setting(
                f"threshold:{key.name}@{key.version}", None if threshold is None else repr(float(threshold))
            )

    def fixed_threshold(self, key: EmbedderKey) -> float | None:
        """This gallery's own threshold for an embedder version (``set_threshold``), if any."""
        value = self._setting("threshold", key)
        return None if value is None else float(value)

    def set_fpir_target(self, key: EmbedderKey, target: float | None) -> None:
        """The fraction of strangers that identification may name as someone in this gallery (None: back
        to the default, ``faceprint.thresholds.DEFAULT_TARGET_FPIR``)."""
        if target is not None and not (math.isfinite(target) and 0.0 < target < 1.0):
            raise GalleryError(f"{self.location}: the FPIR target must be between 0 and 1, got {target}")
        self.store.set_setting(
            f"fpir:{key.name}@{key.version}", None if target is None else repr(float(target))
        )

    def fpir_target(self, key: EmbedderKey) -> float:
        value = self._setting("fpir", key)
        return DEFAULT_TARGET_FPIR if value is None else float(value)

    def save_calibration(self, calibration: Calibration) -> None:
        """Store a calibration for the embedder version it was fitted on (used from then on)."""
        if not calibration.version:
            raise GalleryError(f"{self.location}: a calibration to store needs its embedder version")
        key = calibration.key
        self.store.set_setting(f"calibration:{key.name}@{key.version}", calibration.to_json())

    def calibration(self, key: EmbedderKey, embedder_threshold: float | None = None) -> Calibration:
        """The calibration in force for an embedder version: stored in this gallery, else built in
        (``faceprint.thresholds``), else a fallback centred on the embedder's own threshold. A gallery
        threshold setting overrides its threshold."""
        stored = self._setting("calibration", key)
        if stored is not None:
            cal = Calibration.from_json(stored)
            builtin = builtin_calibration(key)
            if cal.strangers is None and builtin is not None:
                # A calibration fitted on the user's own pairs keeps the stranger model of its embedder.
                cal = replace(cal, strangers=builtin.strangers)
        else:
            cal = calibration_for(key, embedder_threshold)
        override = self._setting("threshold", key)
        if override is not None:
            cal = replace(cal, threshold=float(override), far=math.nan, tar=math.nan)
        return cal

    # -- export / import ----------------------------------------------------------------------

    def export_json(self, path: Path | str) -> int:
        """Write every person and template to a portable JSON file; returns the number of templates."""
        people = []
        count = 0
        by_person: dict[int, list[dict[str, Any]]] = {}
        for t in self.store.templates():
            by_person.setdefault(t.person_id, []).append(
                {
                    "embedder": t.embedder.name,
                    "embedder_version": t.embedder.version,
                    "embedding": base64.b64encode(t.embedding.astype("<f4").tobytes()).decode("ascii"),
                    "source_path": t.source_path,
                    "content_hash": t.content_hash,
                    "detection_score": t.detection_score,
                    "face_size": t.face_size,
                    "quality_flags": list(t.quality_flags),
                    "created": t.created,
                }
            )
            count += 1
        for p in self.people():
            people.append({"name": p.name, "metadata": p.metadata, "templates": by_person.get(p.id, [])})
        doc = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "people": people}
        path = Path(path)
        try:
            write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1)))
        except OSError as err:
            raise GalleryError(f"{path}: cannot write the export ({err.strerror or err})") from err
        return count

    def import_json(self, path: Path | str) -> int:
        """Add the people and templates of an export (people matched by name; duplicates skipped), in one
        transaction; returns the number of templates added."""
        path = Path(path)
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as err:
            raise GalleryError(f"{path}: cannot read ({err.strerror or err})") from err
        except ValueError as err:
            raise GalleryError(f"{path}: not a faceprint gallery export (invalid JSON: {err})") from err
        if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
            raise GalleryError(f"{path}: not a faceprint gallery export")
        if doc.get("version") != EXPORT_VERSION:
            raise GalleryError(f"{path}: export version {doc.get('version')} is not supported")
        added = 0
        try:
            with self.store.transaction():
                for entry in doc["people"]:
                    person = self.find(entry["name"])
                    pid = person.id if person else self.add_person(entry["name"], entry.get("metadata"))
                    for t in entry["templates"]:
                        vector = np.frombuffer(base64.b64decode(t["embedding"]), dtype="<f4")
                        added += (
                            self.add_template(
                                pid,
                                vector,
                                embedder=t["embedder"],
                                embedder_version=t["embedder_version"],
                                source_path=t.get("source_path"),
                                content_hash=t.get("content_hash"),
                                score=t.get("detection_score"),
                                face_size=t.get("face_size"),
                                quality_flags=t.get("quality_flags", ()),
                            )
                            is not None
                        )
        except (KeyError, TypeError, ValueError) as err:
            raise GalleryError(f"{path}: malformed gallery export ({type(err).__name__}: {err})") from err
        return added
