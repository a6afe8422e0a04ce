"""The service's own small SQLite file, beside the gallery: API keys (hashed), the admin password
(scrypt), browser sessions and face thumbnails (corrections live in the gallery, through the library).

Why a separate file and not tables in the gallery: the gallery is a ``GalleryStore`` that may be
PostgreSQL (``--gallery postgresql://...``) or shared read-only with batch jobs; keys and sessions are
the service's business and must not leak into exports or into another store's schema. For a SQLite
gallery ``people.sqlite3`` the file is ``people.service.sqlite3``; for a database URL it is in the user
data folder, one file per database (``--state PATH`` chooses). Thumbnails live here, keyed by template,
and are deleted with the person (``secure_delete`` overwrites their pages, the WAL is truncated after),
so "delete" leaves no face picture behind.

Keys are ``fp_<id>_<secret>``: the id finds the row, only SHA-256 of the secret is stored and compared in
constant time. A 256-bit random secret needs no slow hash; the admin password, chosen by a person,
gets scrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from faceprint.errors import FaceprintError

ROLES = ("recognize", "enrol", "admin")  # each role can do everything the ones before it can
KEY_PREFIX = "fp_"
SESSION_SECONDS = 12 * 3600
PASSWORD_SESSION = "admin-password"  # the key id of sessions signed in with the admin password

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, secret_sha256 TEXT NOT NULL,
    created REAL NOT NULL, last_used REAL, revoked REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY, key_id TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS thumbnails (
    template_id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL, jpeg BLOB NOT NULL, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS thumbnails_person ON thumbnails (person_id);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StateError(FaceprintError):
    """The service state file cannot be opened or changed, or a key/password operation is refused."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: str
    created: float
    last_used: float | None
    revoked: float | None

    @property
    def active(self) -> bool:
        return self.revoked is None


@dataclass(frozen=True)
class Session:
    key_id: str
    role: str
    csrf: str
    expires: float


def role_allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def state_path_for(gallery: str | Path | None) -> Path:
    """Where the state file of a gallery lives (see the module docstring)."""
    from faceprint.gallery import default_gallery_path

    if gallery is None:  # as open_store reads it (a URL in $FACEPRINT_GALLERY must not become a path)
        gallery = os.environ.get("FACEPRINT_GALLERY") or default_gallery_path()
    text = os.fspath(gallery)
    if "://" in text:
        from platformdirs import user_data_dir

        # One file per database (not per password): user, host, port and database name, hashed.
        url = urlsplit(text)
        where = f"{url.username or ''}@{url.hostname or ''}:{url.port or ''}{url.path}"
        digest = hashlib.sha256(where.encode()).hexdigest()[:12]
        return Path(user_data_dir("faceprint")) / f"service-{digest}.sqlite3"
    path = Path(text)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}.service.sqlite3")


class ServiceState:
    """Thread-safe access to the state file (one connection, one lock)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as err:
            raise StateError(f"{self.path}: cannot open the service state file ({err})") from err

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- keys -----------------------------------------------------------------------------------

    def create_key(self, role: str, name: str = "") -> tuple[ApiKey, str]:
        """A new key; returns it and the token, which is shown once and never stored."""
        if role not in ROLES:
            raise StateError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO keys (id, name, role, secret_sha256, created) VALUES (?, ?, ?, ?, ?)",
                (key_id, name, role, _sha256(secret), now),
            )
        return ApiKey(key_id, name, role, now, None, None), f"{KEY_PREFIX}{key_id}_{secret}"

    def keys(self) -> list[ApiKey]:
        rows = self._rows("SELECT id, name, role, created, last_used, revoked FROM keys ORDER BY created")
        return [ApiKey(*r) for r in rows]

    def revoke_key(self, key_id: str) -> ApiKey:
        with self._tx() as db:
            found = db.execute("SELECT revoked FROM keys WHERE id = ?", (key_id,)).fetchone()
            if found is None:
                raise StateError(f"no API key {key_id!r} (see `faceprint keys list`)")
            if found[0] is None:
                db.execute("UPDATE keys SET revoked = ? WHERE id = ?", (time.time(), key_id))
            db.execute("DELETE FROM sessions WHERE key_id = ?", (key_id,))
        return next(k for k in self.keys() if k.id == key_id)

    def check_key(self, token: str) -> ApiKey | None:
        """The active key this token belongs to, or None."""
        if not token.startswith(KEY_PREFIX):
            return None
        key_id, _, secret = token[len(KEY_PREFIX) :].partition("_")
        rows = self._rows(
            "SELECT id, name, role, created, last_used, revoked, secret_sha256 FROM keys WHERE id = ?",
            (key_id,),
        )
        # Compare even when the id is unknown, so timing does not tell which ids exist.
        stored = rows[0][6] if rows else "0" * 64
        if not hmac.compare_digest(stored, _sha256(secret)) or not rows or rows[0][5] is not None:
            return None
        key = ApiKey(*rows[0][:6])
        if key.last_used is None or time.time() - key.last_used > 60:  # at most one write a minute
            with self._lock:
                self._db.execute("UPDATE keys SET last_used = ? WHERE id = ?", (time.time(), key.id))
        return key

    # -- admin password (browser login without a key) ------------------------------------------

    def set_admin_password(self, password: str) -> None:
        if len(password) < 10:
            raise StateError("the admin password must have at least 10 characters")
        salt = secrets.token_bytes(16)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
        value = json.dumps({"salt": salt.hex(), "scrypt": digest.hex()})
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('admin_password', ?)", (value,))
            db.execute("DELETE FROM sessions WHERE key_id = ?", (PASSWORD_SESSION,))

    def has_admin_password(self) -> bool:
        return bool(self._rows("SELECT 1 FROM settings WHERE key = 'admin_password'"))

    def check_admin_password(self, password: str) -> bool:
        rows = self._rows("SELECT value FROM settings WHERE key = 'admin_password'")
        if not rows:
            return False
        stored = json.loads(rows[0][0])
        digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(stored["salt"]), n=2**14, r=8, p=1)
        return hmac.compare_digest(digest.hex(), stored["scrypt"])

    # -- sessions -------------------------------------------------------------------------------

    def create_session(self, key_id: str, role: str) -> tuple[str, Session]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        session = Session(key_id, role, csrf, time.time() + SESSION_SECONDS)
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            db.execute(
                "INSERT INTO sessions (token_sha256, key_id, role, csrf, expires) VALUES (?, ?, ?, ?, ?)",
                (_sha256(token), key_id, role, csrf, session.expires),
            )
        return token, session

    def session(self, token: str) -> Session | None:
        """The live session of this cookie: unexpired, its key not revoked (or the admin password's)."""
        rows = self._rows(
            "SELECT s.key_id, s.role, s.csrf, s.expires FROM sessions s LEFT JOIN keys k ON k.id = s.key_id "
            "WHERE s.token_sha256 = ? AND (k.revoked IS NULL AND (k.id IS NOT NULL OR s.key_id = ?))",
            (_sha256(token), PASSWORD_SESSION),
        )
        if not rows or rows[0][3] < time.time():
            return None
        return Session(*rows[0])

    def end_session(self, token: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_sha256(token),))

    # -- thumbnails -----------------------------------------------------------------------------

    def put_thumbnail(self, template_id: int, person_id: int, jpeg: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO thumbnails (template_id, person_id, jpeg, created) "
                "VALUES (?, ?, ?, ?)",
                (template_id, person_id, jpeg, time.time()),
            )

    def thumbnail(self, template_id: int) -> tuple[int, bytes] | None:
        rows = self._rows("SELECT person_id, jpeg FROM thumbnails WHERE template_id = ?", (template_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def thumbnail_ids(self, person_id: int) -> list[int]:
        rows = self._rows(
            "SELECT template_id FROM thumbnails WHERE person_id = ? ORDER BY template_id", (person_id,)
        )
        return [r[0] for r in rows]

    def first_thumbnails(self) -> dict[int, int]:
        """person id -> template id of that person's first thumbnail."""
        rows = self._rows("SELECT person_id, min(template_id) FROM thumbnails GROUP BY person_id")
        return {r[0]: r[1] for r in rows}

    def move_thumbnails(self, from_person: int, to_person: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE thumbnails SET person_id = ? WHERE person_id = ?", (to_person, from_person))

    def delete_thumbnails(self, *, person_id: int | None = None, template_id: int | None = None) -> int:
        with self._tx() as db:
            if person_id is not None:
                n = db.execute("DELETE FROM thumbnails WHERE person_id = ?", (person_id,)).rowcount
            else:
                n = db.execute("DELETE FROM thumbnails WHERE template_id = ?", (template_id,)).rowcount
        self.purge()
        return n

    def keep_thumbnails(self, template_ids: set[int]) -> int:
        """Delete the thumbnails of templates that no longer exist (deleted by another client)."""
        stale = [r[0] for r in self._rows("SELECT template_id FROM thumbnails") if r[0] not in template_ids]
        with self._tx() as db:
            db.executemany("DELETE FROM thumbnails WHERE template_id = ?", [(t,) for t in stale])
        if stale:
            self.purge()
        return len(stale)

    def purge(self) -> None:
        """Truncate the WAL, so page images of deleted rows leave the disk too."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
