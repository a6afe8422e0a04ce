"""The default gallery store: one SQLite file (stdlib sqlite3), WAL journal, versioned schema.

Why these settings:
- WAL lets readers search while one writer enrols, and a ``kill -9`` at any point leaves the last
  committed state (every enrolment is one transaction).
- ``secure_delete`` overwrites deleted rows with zeros and a TRUNCATE checkpoint after a deletion empties
  the WAL, so deleting a person leaves none of their biometric bytes in the files. A reader still inside
  a read transaction begun before the deletion needs the old pages, so SQLite keeps them in the main file
  until it ends: the checkpoint waits for it (``purge_timeout_s``), then ``ErasureError`` says so instead
  of reporting an erasure that did not happen; ``purge()`` finishes the job later.
- ``application_id`` marks the file as a faceprint gallery and ``user_version`` holds the schema
  version, so a foreign SQLite database or one from a newer faceprint is refused with a clear error
  instead of being altered.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from faceprint.errors import ErasureError, GalleryError
from faceprint.gallery.store import (
    CHANGES_KEPT,
    CHANGES_PRUNE_EVERY,
    Correction,
    CorrectionKind,
    NewCorrection,
    NewTemplate,
    Person,
    Template,
    TemplateMatrix,
)
from faceprint.types import EmbedderKey

APPLICATION_ID = 0x46505254  # "FPRT"
SQLITE_HEADER = b"SQLite format 3\x00"


def _schema_v1(db: sqlite3.Connection) -> None:
    # Statement by statement: executescript() would commit the migration's transaction halfway.
    _run_script(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE people (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            metadata TEXT NOT NULL DEFAULT '{}',
            created REAL NOT NULL
        );
        CREATE TABLE templates (
            id INTEGER PRIMARY KEY,
            person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
            embedder TEXT NOT NULL,
            embedder_version TEXT NOT NULL,
            dim INTEGER NOT NULL,
            embedding BLOB NOT NULL,
            source_path TEXT,
            content_hash TEXT,
            detection_score REAL,
            face_size REAL,
            quality_flags TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            UNIQUE (person_id, content_hash, embedder, embedder_version)
        );
        CREATE INDEX templates_by_embedder ON templates (embedder, embedder_version);
        CREATE INDEX templates_by_hash ON templates (content_hash);
        INSERT INTO meta (key, value) VALUES ('generation', '0');
        """,
    )


def _schema_v2(db: sqlite3.Connection) -> None:
    """Users' corrections: a probe face rejected as (or confirmed to be) a person."""
    _run_script(
        db,
        """
        CREATE TABLE corrections (
            id INTEGER PRIMARY KEY,
            person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('reject', 'confirm')),
            embedder TEXT NOT NULL,
            embedder_version TEXT NOT NULL,
            embedding BLOB NOT NULL,
            content_hash TEXT,
            created REAL NOT NULL
        );
        CREATE INDEX corrections_by_embedder ON corrections (embedder, embedder_version, person_id)
        """,
    )


def _schema_v3(db: sqlite3.Connection) -> None:
    """A log of changed rows (``CHANGES_SQL``), so that a process holding the templates in memory applies
    what changed since its generation instead of reading every template again (store.py, ``changes``)."""
    for statement in CHANGES_SQL:
        db.execute(statement)


# Which template and person rows each generation changed: triggers log the ids (no biometric data) with
# no generation; the transaction that commits them stamps them with its new generation
# (``_stamp_changes``), so a reader that sees generation G sees every change up to G.
CHANGES_SQL = (
    "CREATE TABLE changes (generation INTEGER, kind TEXT NOT NULL, id INTEGER NOT NULL)",
    "CREATE INDEX changes_by_generation ON changes (generation)",
    "INSERT INTO meta (key, value) SELECT 'changes_from', value FROM meta WHERE key = 'generation'",
    *(
        f"CREATE TRIGGER {table}_{event.lower()}_logged AFTER {event} ON {table} "
        f"BEGIN INSERT INTO changes (kind, id) VALUES ('{table[0]}', {row}.id); END"
        for table in ("templates", "people")
        for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD"))
    ),
)


def _run_script(db: sqlite3.Connection, script: str) -> None:
    for statement in filter(str.strip, script.split(";")):
        db.execute(statement)


# MIGRATIONS[i] takes a database at schema version i to version i + 1, inside one transaction.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_schema_v1, _schema_v2, _schema_v3)
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteStore:
    """``GalleryStore`` on one SQLite file; safe to share between threads (one connection, one lock)."""

    def __init__(
        self,
        path: Path,
        *,
        timeout_s: float = 30.0,
        purge_timeout_s: float | None = None,
        read_only: bool = False,
        create: bool = True,
    ) -> None:
        """``timeout_s``: how long a write waits for another writer; ``purge_timeout_s`` (default the
        same): how long erasing deleted records waits for readers of an older snapshot to finish.
        ``read_only``: open with SQLite's ``mode=ro`` (works in read-only folders and on read-only files;
        nothing is created or migrated); ``create=False``: a missing file is an error, not a new gallery."""
        self.path = Path(path)
        self.location = str(self.path)
        self.read_only = read_only
        self._busy_ms = int(timeout_s * 1000)
        self.purge_timeout_s = timeout_s if purge_timeout_s is None else purge_timeout_s
        self._lock = threading.RLock()
        self._depth = 0
        self._purge_pending = False
        _check_header(self.path)
        if (read_only or not create) and not self.path.is_file():
            raise GalleryError(
                f"{self.path}: no gallery here (only enrolling creates one: faceprint enroll NAME IMAGE "
                "--gallery PATH); check --gallery or $FACEPRINT_GALLERY"
            )
        try:
            self._db = self._connect_read_only(timeout_s) if read_only else self._connect(timeout_s)
        except (sqlite3.Error, OSError) as err:
            raise GalleryError(f"{self.path}: cannot open the gallery ({_os_reason(err)})") from err
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            self._check_identity()
            if read_only:
                self._check_schema_readable()
            else:
                if self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                    raise GalleryError(f"{self.path}: the file system does not support SQLite's WAL mode")
                self._db.execute("PRAGMA synchronous = NORMAL")
                self._migrate()
        except sqlite3.OperationalError as err:
            self._db.close()
            if _read_only_error(err) or not (read_only or _writable(self.path)):
                raise GalleryError(
                    f"{self.path}: the gallery cannot be written here (read-only file or folder); "
                    "reading commands (people list, identify, threshold) still work"
                ) from err
            raise GalleryError(f"{self.path}: damaged gallery database ({err})") from err
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise GalleryError(f"{self.path}: damaged gallery database ({err})") from err
        except GalleryError:
            self._db.close()
            raise

    def _connect(self, timeout_s: float) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) in transaction().
        return sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)

    def _connect_read_only(self, timeout_s: float) -> sqlite3.Connection:
        """``mode=ro``. A WAL database needs its -shm file to be read that way, and in a read-only folder
        nobody can create it: when there is no -wal file either (every change is in the main file, as
        after the last writer closed), the file is opened ``immutable`` instead."""
        uri = self.path.resolve().as_uri()
        try:
            db = sqlite3.connect(
                f"{uri}?mode=ro", uri=True, timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            if Path(f"{self.path}-wal").exists():
                raise
        return sqlite3.connect(
            f"{uri}?mode=ro&immutable=1",
            uri=True,
            timeout=timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )

    def _check_schema_readable(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            raise GalleryError(
                f"{self.path}: written by an older faceprint (schema {version}, now {SCHEMA_VERSION}); "
                "a command that changes the gallery (e.g. faceprint people purge) upgrades it"
            )

    # -- opening ------------------------------------------------------------------------------

    def _check_identity(self) -> None:
        app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        n_tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and version == 0 and n_tables == 0:
            return  # a new, empty file: _migrate creates the schema
        if app_id != APPLICATION_ID:
            raise GalleryError(
                f"{self.path}: not a faceprint gallery (a SQLite database of another application); "
                "choose another --gallery path"
            )
        if version > SCHEMA_VERSION:
            raise GalleryError(
                f"{self.path}: gallery schema version {version} is newer than this faceprint supports "
                f"({SCHEMA_VERSION}); upgrade faceprint"
            )

    def _migrate(self) -> None:
        if self._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return  # up to date: no write lock, so opening never waits for a busy writer
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # Read again inside the write lock: another process may have migrated meanwhile.
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                for step in range(version, SCHEMA_VERSION):
                    MIGRATIONS[step](self._db)
                if version < SCHEMA_VERSION:
                    self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
                if outer:
                    self._execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
                    self._stamp_changes()
                    self._execute("COMMIT")
            except BaseException:
                if outer:
                    self._db.execute("ROLLBACK")
                    self._purge_pending = False
                raise
            finally:
                self._depth -= 1
            if outer and self._purge_pending:  # committed: erase what the deletions left in the WAL
                self._purge_pending = False
                self.purge()

    def _execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.OperationalError as err:
            if _read_only_error(err):
                raise GalleryError(
                    f"{self.path}: the gallery cannot be written "
                    f"({'opened read-only' if self.read_only else 'read-only file or folder'})"
                ) from err
            raise GalleryError(f"{self.path}: {err}") from err
        except sqlite3.DatabaseError as err:
            raise GalleryError(f"{self.path}: damaged gallery database ({err})") from err

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._execute(sql, params).fetchall()

    # -- people -------------------------------------------------------------------------------

    def add_person(self, name: str, metadata: dict[str, Any] | None = None) -> int:
        with self.transaction():
            try:
                cur = self._execute(
                    "INSERT INTO people (name, metadata, created) VALUES (?, ?, ?)",
                    (name, json.dumps(metadata or {}), time.time()),
                )
            except sqlite3.IntegrityError as err:
                raise GalleryError(f"{self.path}: a person named {name!r} already exists") from err
            return int(cur.lastrowid)

    def _people(self, where: str = "", params: tuple = ()) -> list[Person]:
        rows = self._query(
            "SELECT p.id, p.name, p.metadata, p.created, count(t.id) FROM people p "
            f"LEFT JOIN templates t ON t.person_id = p.id {where} GROUP BY p.id ORDER BY p.name",
            params,
        )
        return [Person(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def get_person(self, person_id: int) -> Person | None:
        found = self._people("WHERE p.id = ?", (person_id,))
        return found[0] if found else None

    def find_person(self, name: str) -> Person | None:
        found = self._people("WHERE p.name = ?", (name,))
        return found[0] if found else None

    def people(self) -> list[Person]:
        return self._people()

    def rename_person(self, person_id: int, new_name: str) -> None:
        with self.transaction():
            try:
                self._execute("UPDATE people SET name = ? WHERE id = ?", (new_name, person_id))
            except sqlite3.IntegrityError as err:
                raise GalleryError(f"{self.path}: a person named {new_name!r} already exists") from err

    def set_metadata(self, person_id: int, metadata: dict[str, Any]) -> None:
        with self.transaction():
            self._execute("UPDATE people SET metadata = ? WHERE id = ?", (json.dumps(metadata), person_id))

    def move_templates(self, from_person: int, to_person: int) -> int:
        with self.transaction():
            moved = self._execute(
                "UPDATE OR IGNORE templates SET person_id = ? WHERE person_id = ?", (to_person, from_person)
            ).rowcount
            # What is left is what the target already had (same content and embedder).
            self._execute("DELETE FROM templates WHERE person_id = ?", (from_person,))
        return moved

    def delete_person(self, person_id: int) -> int:
        with self.transaction():
            n = self._execute("SELECT count(*) FROM templates WHERE person_id = ?", (person_id,)).fetchone()[
                0
            ]
            # templates and corrections: ON DELETE CASCADE
            self._execute("DELETE FROM people WHERE id = ?", (person_id,))
        self._purge_wal()
        return int(n)

    def _purge_wal(self) -> None:
        """Fold the WAL into the main file and truncate it, so old page images of deleted rows go away
        (deferred to the end of the outermost transaction)."""
        with self._lock:
            if self._depth:
                self._purge_pending = True
            else:
                self.purge()

    def purge(self) -> None:
        """Erase what deletions left on disk: fold the WAL (whose deleted rows ``secure_delete`` zeroed)
        into the main file and truncate it. Waits up to ``purge_timeout_s`` for connections reading an
        older snapshot (they need the old pages), then raises ``ErasureError``."""
        with self._lock:
            self._db.execute(f"PRAGMA busy_timeout = {int(self.purge_timeout_s * 1000)}")
            try:
                busy = self._execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        if busy:
            raise ErasureError(
                f"{self.path}: the deleted records are still in the file: another connection "
                f"has held a read transaction open for over {self.purge_timeout_s:g} s (a running "
                "`faceprint serve`, `watch` or `identify`?); when it has ended, run `faceprint people purge`"
            )

    # -- templates ----------------------------------------------------------------------------

    def add_template(self, template: NewTemplate) -> int | None:
        vector = np.ascontiguousarray(template.embedding, dtype="<f4").ravel()
        with self.transaction():
            row = self._execute(
                "SELECT dim FROM templates WHERE embedder = ? AND embedder_version = ? LIMIT 1",
                (template.embedder.name, template.embedder.version),
            ).fetchone()
            if row is not None and row[0] != vector.size:
                raise GalleryError(
                    f"{self.path}: {template.embedder} templates have {row[0]} dimensions, "
                    f"this one has {vector.size}"
                )
            cur = self._execute(
                "INSERT OR IGNORE INTO templates (person_id, embedder, embedder_version, dim, embedding, "
                "source_path, content_hash, detection_score, face_size, quality_flags, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    template.person_id,
                    template.embedder.name,
                    template.embedder.version,
                    vector.size,
                    vector.tobytes(),
                    template.source_path,
                    template.content_hash,
                    template.detection_score,
                    template.face_size,
                    ",".join(template.quality_flags),
                    time.time(),
                ),
            )
            return int(cur.lastrowid) if cur.rowcount else None

    def find_template(self, person_id: int, content_hash: str, embedder: EmbedderKey) -> int | None:
        rows = self._query(
            "SELECT id FROM templates WHERE person_id = ? AND content_hash = ? AND embedder = ? "
            "AND embedder_version = ?",
            (person_id, content_hash, embedder.name, embedder.version),
        )
        return rows[0][0] if rows else None

    def owners_of(self, content_hash: str, embedder: EmbedderKey) -> list[int]:
        rows = self._query(
            "SELECT DISTINCT person_id FROM templates WHERE content_hash = ? AND embedder = ? "
            "AND embedder_version = ?",
            (content_hash, embedder.name, embedder.version),
        )
        return [r[0] for r in rows]

    def templates(self, person_id: int | None = None) -> Iterator[Template]:
        where, params = ("WHERE person_id = ?", (person_id,)) if person_id is not None else ("", ())
        rows = self._query(
            "SELECT id, person_id, embedder, embedder_version, embedding, source_path, content_hash, "
            f"detection_score, face_size, quality_flags, created FROM templates {where} ORDER BY id",
            params,
        )
        for r in rows:
            yield Template(
                id=r[0],
                person_id=r[1],
                embedder=EmbedderKey(r[2], r[3]),
                embedding=np.frombuffer(r[4], dtype="<f4").astype(np.float32),
                source_path=r[5],
                content_hash=r[6],
                detection_score=r[7],
                face_size=r[8],
                quality_flags=tuple(f for f in r[9].split(",") if f),
                created=r[10],
            )

    def delete_template(self, template_id: int) -> bool:
        with self.transaction():
            gone = self._execute("DELETE FROM templates WHERE id = ?", (template_id,)).rowcount > 0
        self._purge_wal()
        return gone

    def embedders(self) -> list[EmbedderKey]:
        rows = self._query("SELECT DISTINCT embedder, embedder_version FROM templates ORDER BY 1, 2")
        return [EmbedderKey(*r) for r in rows]

    def matrix(self, embedder: EmbedderKey) -> TemplateMatrix:
        rows = self._query(
            "SELECT id, person_id, dim, embedding FROM templates WHERE embedder = ? AND embedder_version = ? "
            "ORDER BY id",
            (embedder.name, embedder.version),
        )
        return _matrix(embedder, rows, self.path)

    # -- corrections --------------------------------------------------------------------------

    def add_correction(self, correction: NewCorrection) -> int:
        vector = np.ascontiguousarray(correction.embedding, dtype="<f4").ravel()
        with self.transaction():
            cur = self._execute(
                "INSERT INTO corrections (person_id, kind, embedder, embedder_version, embedding, "
                "content_hash, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    correction.person_id,
                    correction.kind,
                    correction.embedder.name,
                    correction.embedder.version,
                    vector.tobytes(),
                    correction.content_hash,
                    time.time(),
                ),
            )
            return int(cur.lastrowid)

    def corrections(
        self, embedder: EmbedderKey, person_id: int | None = None, kind: CorrectionKind | None = None
    ) -> list[Correction]:
        where, params = "embedder = ? AND embedder_version = ?", [embedder.name, embedder.version]
        if person_id is not None:
            where, params = where + " AND person_id = ?", [*params, person_id]
        if kind is not None:
            where, params = where + " AND kind = ?", [*params, kind]
        rows = self._query(
            "SELECT id, person_id, kind, embedding, content_hash, created FROM corrections "
            f"WHERE {where} ORDER BY id",
            tuple(params),
        )
        return [
            Correction(
                person_id=r[1],
                kind=r[2],
                embedder=embedder,
                embedding=np.frombuffer(r[3], dtype="<f4").astype(np.float32),
                content_hash=r[4],
                id=r[0],
                created=r[5],
            )
            for r in rows
        ]

    def delete_correction(self, correction_id: int) -> bool:
        with self.transaction():
            gone = self._execute("DELETE FROM corrections WHERE id = ?", (correction_id,)).rowcount > 0
        self._purge_wal()
        return gone

    # -- settings and bookkeeping -------------------------------------------------------------

    def _stamp_changes(self) -> None:
        """Give this transaction's logged changes its new generation; now and then drop the oldest."""
        (generation,) = self._execute(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'"
        ).fetchone()
        self._execute("UPDATE changes SET generation = ? WHERE generation IS NULL", (generation,))
        if generation % CHANGES_PRUNE_EVERY == 0 and generation > CHANGES_KEPT:
            self._execute("DELETE FROM changes WHERE generation <= ?", (generation - CHANGES_KEPT,))
            self._execute(
                "UPDATE meta SET value = ? WHERE key = 'changes_from' AND CAST(value AS INTEGER) < ?",
                (str(generation - CHANGES_KEPT), generation - CHANGES_KEPT),
            )

    def changes(self, since: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(template ids, person ids) of the rows changed after generation ``since``; None when the log
        no longer reaches back that far."""
        with self._lock:
            start = self._execute("SELECT value FROM meta WHERE key = 'changes_from'").fetchone()
            if start is None or since < int(start[0]):
                return None
            rows = self._execute("SELECT kind, id FROM changes WHERE generation > ?", (since,)).fetchall()
        return _split_changes(rows)

    def templates_by_id(self, embedder: EmbedderKey, ids: np.ndarray) -> TemplateMatrix:
        """The templates of ``embedder`` among ``ids`` (those that still exist), as ``matrix`` gives them."""
        rows = self._query(
            "SELECT id, person_id, dim, embedding FROM templates WHERE embedder = ? AND embedder_version = ? "
            "AND id IN (SELECT value FROM json_each(?)) ORDER BY id",
            (embedder.name, embedder.version, json.dumps([int(i) for i in ids])),
        )
        return _matrix(embedder, rows, self.path)

    def names(self, ids: np.ndarray) -> dict[int, str]:
        """``{id: name}`` of the people among ``ids`` that exist."""
        rows = self._query(
            "SELECT id, name FROM people WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        )
        return {int(i): n for i, n in rows}

    def generation(self) -> int:
        return int(self._query("SELECT value FROM meta WHERE key = 'generation'")[0][0])

    def get_setting(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (f"setting:{key}",))
        return rows[0][0] if rows else None

    def set_setting(self, key: str, value: str | None) -> None:
        with self.transaction():
            if value is None:
                self._execute("DELETE FROM meta WHERE key = ?", (f"setting:{key}",))
            else:
                self._execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"setting:{key}", value)
                )

    def integrity_check(self) -> list[str]:
        """SQLite's own consistency check; ``["ok"]`` when the file is sound."""
        return [r[0] for r in self._query("PRAGMA integrity_check")]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _check_header(path: Path) -> None:
    """Refuse a non-empty file that is not SQLite before sqlite3 gets to treat it as anything."""
    try:
        if not path.exists() or path.stat().st_size == 0:
            return
        if path.is_dir():
            raise GalleryError(f"{path}: is a folder; give the path of a gallery file")
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as err:
        raise GalleryError(f"{path}: cannot read the gallery file ({err.strerror or err})") from err
    if head != SQLITE_HEADER:
        raise GalleryError(f"{path}: not a gallery database (the file is damaged or of another kind)")


def _read_only_error(err: sqlite3.Error) -> bool:
    return getattr(err, "sqlite_errorname", "") == "SQLITE_READONLY" or "readonly" in str(err)


def _os_reason(err: BaseException) -> str:
    return (err.strerror or str(err)) if isinstance(err, OSError) else str(err)


def _writable(path: Path) -> bool:
    """Can SQLite write the file and create its -wal and -shm files beside it?"""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def _matrix(embedder: EmbedderKey, rows: list[tuple], path: Path) -> TemplateMatrix:
    """(id, person id, dim, embedding bytes) rows as a ``TemplateMatrix``."""
    dims = {r[2] for r in rows}
    if len(dims) > 1:
        raise GalleryError(f"{path}: templates of {embedder} have different sizes {sorted(dims)}")
    dim = dims.pop() if dims else 0
    vectors = np.frombuffer(b"".join(r[3] for r in rows), dtype="<f4").astype(np.float32)
    return TemplateMatrix(
        embedder,
        np.fromiter((r[0] for r in rows), np.int64, len(rows)),
        np.fromiter((r[1] for r in rows), np.int64, len(rows)),
        np.ascontiguousarray(vectors.reshape(len(rows), dim)),
    )


def _split_changes(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Logged (kind, id) rows as (template ids, person ids), each unique."""
    templates = np.unique(np.array([i for k, i in rows if k == "t"], np.int64))
    people = np.unique(np.array([i for k, i in rows if k == "p"], np.int64))
    return templates, people
