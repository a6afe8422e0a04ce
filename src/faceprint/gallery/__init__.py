"""Galleries of known people: storage (SQLite by default, or PostgreSQL), exact search, per-gallery
thresholds, enrolment.

Importing this package is cheap (NumPy and the stdlib); models load only when enrolment runs.
"""

from __future__ import annotations

from faceprint.gallery.enrollment import EnrollReport, EnrollResult
from faceprint.gallery.gallery import DatabaseIndex, Gallery, default_gallery_path
from faceprint.gallery.matching import Candidate, MatchIndex
from faceprint.gallery.sqlite import SQLiteStore
from faceprint.gallery.store import Correction, EmbedderKey, GalleryStore, Person, Template, open_store

__all__ = [
    "Candidate",
    "Correction",
    "DatabaseIndex",
    "EmbedderKey",
    "EnrollReport",
    "EnrollResult",
    "Gallery",
    "GalleryStore",
    "MatchIndex",
    "Person",
    "SQLiteStore",
    "Template",
    "default_gallery_path",
    "open_store",
]
