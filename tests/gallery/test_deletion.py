"""Deletion is a guarantee: after `delete` none of the person's bytes (embeddings, name, paths, hashes,
corrections) are left in the store's storage, or the delete fails loudly, also while another
connection holds a read transaction on the gallery.

The tests are written against the store protocol and one ``StoreCase`` per store (how to open it, how
to read its raw storage, how to hold a concurrent read transaction), so another store is tested by
adding its case to ``STORE_CASES``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import ErasureError
from faceprint.gallery import EmbedderKey, Gallery
from faceprint.gallery.sqlite import SQLiteStore

KEY = EmbedderKey("dlib-resnet", "1")
EMB = {"embedder": KEY.name, "embedder_version": KEY.version}


@dataclass
class StoreCase:
    """How the deletion tests drive one kind of store."""

    open: Callable[[float], Gallery]  # a gallery on the store; the argument: purge_timeout_s
    raw: Callable[[], bytes]  # every byte the store keeps on disk, read while it is open
    reader: Callable[[], AbstractContextManager[None]]  # a concurrent connection inside a read transaction


def _sqlite_case(tmp_path: Path) -> StoreCase:
    path = tmp_path / "g.sqlite3"

    def raw() -> bytes:  # the database, its WAL and anything else SQLite keeps beside it
        return b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.is_file())

    @contextmanager
    def reader() -> Iterator[None]:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN")
        assert db.execute("SELECT count(*) FROM templates").fetchone()[0] > 0  # the snapshot is taken
        try:
            yield
        finally:
            db.execute("COMMIT")
            db.close()

    return StoreCase(lambda wait: Gallery(SQLiteStore(path, purge_timeout_s=wait)), raw, reader)


def _postgres_case(tmp_path: Path, request: pytest.FixtureRequest) -> StoreCase:
    server = request.getfixturevalue("postgres_server")
    url = server.new_database()
    request.addfinalizer(lambda: server.drop(url))

    def open_gallery(wait: float) -> Gallery:
        g = Gallery.open(url)
        g.store.purge_timeout_s = wait
        return g

    @contextmanager
    def reader() -> Iterator[None]:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            assert conn.execute("SELECT count(*) FROM faceprint.templates").fetchone()[0] > 0
            try:
                yield
            finally:
                conn.execute("COMMIT")

    return StoreCase(open_gallery, server.data_bytes, reader)


STORE_CASES: dict[str, Callable[[Path, pytest.FixtureRequest], StoreCase]] = {
    "sqlite": lambda tmp_path, _: _sqlite_case(tmp_path),
    "postgres": _postgres_case,
}


@pytest.fixture(params=sorted(STORE_CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> StoreCase:
    return STORE_CASES[request.param](tmp_path, request)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _fill(g: Gallery) -> tuple[bytes, ...]:
    """Frank (4 templates, a correction) to delete and Grace to keep; returns Frank's byte fragments."""
    rng = np.random.default_rng(8)
    frank = g.add_person("Frank Secretname", {"note": "frank-metadata"})
    vectors = unit(rng, 4)
    for i, v in enumerate(vectors):
        g.add_template(frank, v, content_hash=f"{i}" * 64, source_path=f"/photos/frank-{i}.jpg", **EMB)
    probe = unit(rng, 1)[0]
    g.add_correction(frank, "reject", probe, KEY, content_hash="c" * 64)
    grace = g.add_person("Grace Keeper")
    for i, v in enumerate(unit(rng, 30)):
        g.add_template(grace, v, content_hash=f"g{i}", **EMB)
    fragments = [b"Frank Secretname", b"frank-metadata", b"/photos/frank-", b"c" * 64]
    for i, v in enumerate([*vectors, probe]):
        blob = v.astype("<f4").tobytes()
        fragments += [blob[:32], blob[-32:]]
        fragments += [f"{i}".encode() * 64] if i < 4 else []
    return tuple(fragments)


def _left(raw: bytes, fragments: tuple[bytes, ...]) -> list[bytes]:
    return [f for f in fragments if f in raw]


def test_delete_erases_every_byte_while_the_gallery_is_open(case: StoreCase) -> None:
    with case.open(5.0) as g:
        fragments = _fill(g)
        assert _left(case.raw(), fragments) == list(fragments)  # the check can see them
        assert g.delete("Frank Secretname") == 4
        assert _left(case.raw(), fragments) == []
        assert g.find("Frank Secretname") is None and g.corrections(KEY) == []
        assert g.person("Grace Keeper").n_templates == 30
        assert b"Grace Keeper" in case.raw()


def test_a_reader_that_ends_within_the_bound_does_not_stop_the_erasure(case: StoreCase) -> None:
    with case.open(20.0) as g:
        fragments = _fill(g)
        holding, ended = threading.Event(), threading.Event()

        def hold_reader() -> None:  # a snapshot from before the delete, held for a second
            with case.reader():
                holding.set()
                time.sleep(1.0)
            ended.set()

        thread = threading.Thread(target=hold_reader)
        thread.start()
        assert holding.wait(10)
        g.delete("Frank Secretname")
        assert ended.is_set()  # the erasure waited for the reader rather than leave the bytes
        thread.join()
        assert _left(case.raw(), fragments) == []


def test_a_reader_that_outlasts_the_bound_makes_the_delete_fail_loudly(case: StoreCase) -> None:
    with case.open(0.3) as g:
        fragments = _fill(g)
        with case.reader():
            with pytest.raises(ErasureError, match=r"transaction.*open for over 0.3 s.*people purge"):
                g.delete("Frank Secretname")
            # The person is gone for every new reader, and the error told the truth: bytes remain.
            assert g.find("Frank Secretname") is None
            assert _left(case.raw(), fragments)
        g.purge()  # the reader has ended
        assert _left(case.raw(), fragments) == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from faceprint.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=os.environ
    )


def test_people_delete_with_a_concurrent_reader_exits_1_and_purge_finishes(tmp_path: Path) -> None:
    case = _sqlite_case(tmp_path)
    with case.open(5.0) as g:
        fragments = _fill(g)
    gallery = str(tmp_path / "g.sqlite3")
    # What `faceprint serve` keeps of the person: a face thumbnail in its state file beside the gallery.
    from faceprint.service.state import ServiceState, state_path_for

    state = ServiceState(state_path_for(gallery))
    with case.open(5.0) as g:
        frank = g.person("Frank Secretname")
        state.put_thumbnail(g.templates(frank.id)[0].id, frank.id, b"\xff\xd8frank-thumbnail-pixels\xff\xd9")
    state.close()
    fragments += (b"frank-thumbnail-pixels",)
    with case.reader():
        proc = _cli("people", "delete", "Frank Secretname", "--yes", "--wait", "0.5", "--gallery", gallery)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "deleted Frank" not in proc.stdout
        (line,) = proc.stderr.strip().splitlines()  # one line, no traceback
        assert "not erased from disk yet" in line and "people purge" in line, line
        assert _left(case.raw(), fragments)
    proc = _cli("people", "purge", "--gallery", gallery)
    assert proc.returncode == 0, proc.stderr
    assert _left(case.raw(), fragments) == []
    with case.open(5.0) as g:  # and the next delete, with no reader, says it erased
        assert g.find("Frank Secretname") is None
        assert g.person("Grace Keeper").n_templates == 30
    proc = _cli("people", "delete", "Grace Keeper", "--yes", "--gallery", gallery)
    assert proc.returncode == 0 and "erased" in proc.stdout, proc.stderr
