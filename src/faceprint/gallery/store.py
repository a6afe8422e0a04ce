"""The gallery's storage interface: people, templates and settings behind a small protocol.

The SQLite implementation (``sqlite.py``) is the default; PostgreSQL with pgvector (``postgres.py``)
implements the same protocol, and the ``Gallery`` facade, matching and enrolment work on either.
``open_store`` is the one place a ``--gallery`` value (a path or a ``postgresql://`` URL) becomes a store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from faceprint.errors import GalleryError
from faceprint.types import EmbedderKey


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    metadata: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0  # Unix time
    n_templates: int = 0


@dataclass(frozen=True)
class Template:
    """One enrolled face of a person."""

    id: int
    person_id: int
    embedder: EmbedderKey
    embedding: np.ndarray = field(repr=False)  # (D,) float32, L2-normalised
    source_path: str | None = None
    content_hash: str | None = None  # SHA-256 of the source file's bytes (or of the pixels)
    detection_score: float | None = None
    face_size: float | None = None  # shorter side of the detection box, in pixels
    quality_flags: tuple[str, ...] = ()
    created: float = 0.0


@dataclass(frozen=True)
class TemplateMatrix:
    """Every template of one embedder as arrays, for vectorised search."""

    embedder: EmbedderKey
    template_ids: np.ndarray  # (N,) int64
    person_ids: np.ndarray  # (N,) int64
    embeddings: np.ndarray  # (N, D) float32, C-contiguous


# The stores' change logs (which template and person ids each generation changed) keep the last
# CHANGES_KEPT generations, pruned every CHANGES_PRUNE_EVERY; a process whose in-memory templates are
# older than that reads them all again, as it did before there was a log.
CHANGES_KEPT = 10_000
CHANGES_PRUNE_EVERY = 500


@dataclass(frozen=True)
class NewTemplate:
    """What ``add_template`` stores (the id and creation time are assigned by the store)."""

    person_id: int
    embedder: EmbedderKey
    embedding: np.ndarray = field(repr=False)
    source_path: str | None = None
    content_hash: str | None = None
    detection_score: float | None = None
    face_size: float | None = None
    quality_flags: tuple[str, ...] = ()


CorrectionKind = Literal["reject", "confirm"]
CORRECTION_KINDS: tuple[str, ...] = ("reject", "confirm")


@dataclass(frozen=True)
class NewCorrection:
    """What ``add_correction`` stores: a user's verdict on one probe face and one person.

    ``"reject"``: the face (``embedding``) is not this person; ``"confirm"``: it is. The probe's embedding
    is kept (it is what makes "faces close to it" recognisable later), so it is biometric data of
    whoever was in the picture: it goes when the person it is filed under is deleted."""

    person_id: int
    kind: CorrectionKind
    embedder: EmbedderKey
    embedding: np.ndarray = field(repr=False)  # (D,) float32, L2-normalised
    content_hash: str | None = None  # of the probe image, when known


@dataclass(frozen=True)
class Correction(NewCorrection):
    """A stored correction (the id and creation time are assigned by the store)."""

    id: int = 0
    created: float = 0.0  # Unix time


class GalleryStore(Protocol):
    """Persistence of people and templates. Methods raise ``GalleryError`` with the store's location."""

    location: str

    def transaction(self) -> AbstractContextManager[None]:
        """Group writes: all of them happen or none (nested calls join the outer transaction)."""
        ...

    def add_person(self, name: str, metadata: dict[str, Any] | None = None) -> int: ...

    def get_person(self, person_id: int) -> Person | None: ...

    def find_person(self, name: str) -> Person | None: ...

    def people(self) -> list[Person]: ...

    def rename_person(self, person_id: int, new_name: str) -> None: ...

    def set_metadata(self, person_id: int, metadata: dict[str, Any]) -> None: ...

    def move_templates(self, from_person: int, to_person: int) -> int:
        """Reassign templates (dropping those the target already has); returns how many moved."""
        ...

    def delete_person(self, person_id: int) -> int:
        """Delete the person, every template and every correction filed under them, leaving no trace
        of them; returns templates deleted."""
        ...

    def add_template(self, template: NewTemplate) -> int | None:
        """Store a template; None when the person already has one from the same content and embedder."""
        ...

    def find_template(self, person_id: int, content_hash: str, embedder: EmbedderKey) -> int | None: ...

    def owners_of(self, content_hash: str, embedder: EmbedderKey) -> list[int]:
        """Ids of the people who have a template from this content and embedder."""
        ...

    def templates(self, person_id: int | None = None) -> Iterator[Template]: ...

    def delete_template(self, template_id: int) -> bool: ...

    def embedders(self) -> list[EmbedderKey]: ...

    def add_correction(self, correction: NewCorrection) -> int:
        """Store a correction; returns its id."""
        ...

    def corrections(
        self, embedder: EmbedderKey, person_id: int | None = None, kind: CorrectionKind | None = None
    ) -> list[Correction]:
        """The corrections of one embedder (optionally of one person and kind), oldest first."""
        ...

    def delete_correction(self, correction_id: int) -> bool: ...

    def matrix(self, embedder: EmbedderKey) -> TemplateMatrix: ...

    def generation(self) -> int:
        """A number that changes whenever the store's content changes (cheap to read)."""
        ...

    def get_setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str | None) -> None: ...

    def close(self) -> None: ...


def open_store(
    target: str | os.PathLike[str] | None = None, *, read_only: bool = False, create: bool = True
) -> GalleryStore:
    """The one place a gallery location becomes a store: ``postgresql://...`` (or ``postgres://``) opens
    the PostgreSQL store (``faceprint[postgres]``), anything else is the path of a SQLite file; None is
    $FACEPRINT_GALLERY, else ``gallery.sqlite3`` in the user data folder. ``read_only``: for commands
    that only read (a SQLite file is opened ``mode=ro``, so read-only places work); ``create=False``: a
    missing gallery is an error rather than a new, empty one (PostgreSQL: the database must exist anyway;
    without ``create`` its faceprint schema must too)."""
    from faceprint.gallery.postgres import is_postgres_url

    text = gallery_location(target)
    if is_postgres_url(text):
        from faceprint.gallery.postgres import PostgresStore

        return PostgresStore(text, create=create and not read_only)
    if text.startswith(("postgresql:/", "postgres:/")):
        # A URL that went through pathlib.Path lost a slash ("postgresql:/host/db"): say so.
        raise GalleryError(f"{text}: not a valid gallery URL (write postgresql://user@host/database)")
    from faceprint.gallery.sqlite import SQLiteStore

    return SQLiteStore(Path(text), read_only=read_only, create=create)


def gallery_location(target: str | os.PathLike[str] | None = None) -> str:
    """The gallery a ``--gallery`` value names, as text: the value itself; None: $FACEPRINT_GALLERY, else
    ``gallery.sqlite3`` in the user data folder."""
    if target is not None:
        return os.fspath(target)
    env = os.environ.get("FACEPRINT_GALLERY")
    if env:
        return env
    from faceprint.gallery.gallery import default_gallery_path

    return str(default_gallery_path())
