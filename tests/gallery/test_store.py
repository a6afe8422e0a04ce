"""Gallery store behaviour on synthetic unit vectors: people, dedup, rename/merge/delete, export/import,
embedder separation, schema checks and erasure of deleted biometric data. Every test that takes
``gallery``/``gallery_url``/``new_gallery_url`` runs on both stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import GalleryError
from faceprint.gallery import EmbedderKey, Gallery
from faceprint.gallery.sqlite import SCHEMA_VERSION

EMB = {"embedder": "dlib-resnet", "embedder_version": "1"}
KEY = EmbedderKey("dlib-resnet", "1")


def unit(rng: np.random.Generator, n: int = 1, dim: int = 128) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture()
def gallery(gallery_url: str):
    with Gallery.open(gallery_url) as g:
        yield g


def test_people_and_templates_round_trip(gallery: Gallery) -> None:
    rng = np.random.default_rng(0)
    alice = gallery.add_person("Alice", {"team": "red"})
    vectors = unit(rng, 3)
    ids = [
        gallery.add_template(alice, v, content_hash=f"h{i}", score=0.99, face_size=80, **EMB)
        for i, v in enumerate(vectors)
    ]
    assert len(set(ids)) == 3 and None not in ids
    person = gallery.person("Alice")
    assert (person.id, person.n_templates, person.metadata) == (alice, 3, {"team": "red"})
    stored = gallery.templates("Alice")
    # float32 stored as is.
    np.testing.assert_allclose(np.stack([t.embedding for t in stored]), vectors, atol=1e-7)
    assert stored[0].embedder == KEY and stored[0].face_size == 80


def test_same_content_is_not_duplicated(gallery: Gallery) -> None:
    v = unit(np.random.default_rng(1))[0]
    pid = gallery.add_person("Bob")
    assert gallery.add_template(pid, v, content_hash="same", **EMB) is not None
    assert gallery.add_template(pid, v, content_hash="same", **EMB) is None
    assert gallery.person("Bob").n_templates == 1


def test_duplicate_name_and_reserved_name_are_refused(gallery: Gallery) -> None:
    gallery.add_person("Carol")
    with pytest.raises(GalleryError, match="already exists"):
        gallery.add_person("Carol")
    with pytest.raises(GalleryError, match="reserved"):
        gallery.add_person("Unknown")


def test_search_finds_nearest_person_with_distances(gallery: Gallery) -> None:
    rng = np.random.default_rng(2)
    vectors = unit(rng, 20)
    for i, v in enumerate(vectors):
        pid = gallery.add_person(f"p{i}")
        gallery.add_template(pid, v, content_hash=str(i), **EMB)
    probe = vectors[7] + 0.05 * unit(rng)[0]
    probe /= np.linalg.norm(probe)
    (cands,) = gallery.search(probe, KEY, top_k=3)
    assert cands[0].name == "p7"
    expected = np.sort(np.linalg.norm(vectors - probe, axis=1))[:3]
    # float32 dot products, summed in BLAS's order.
    np.testing.assert_allclose([c.distance for c in cands], expected, atol=1e-5)


def test_nearest_and_mean_combination_differ_as_defined(new_gallery_url) -> None:
    rng = np.random.default_rng(3)
    a, b, probe = unit(rng, 3)
    for combine in ("nearest", "mean"):
        with Gallery.open(new_gallery_url(combine), combine=combine) as g:
            pid = g.add_person("x")
            g.add_template(pid, a, content_hash="a", **EMB)
            g.add_template(pid, b, content_hash="b", **EMB)
            (cands,) = g.search(probe, KEY)
            if combine == "nearest":
                want = min(np.linalg.norm(a - probe), np.linalg.norm(b - probe))
            else:
                centre = (a + b) / np.linalg.norm(a + b)
                want = np.linalg.norm(centre - probe)
            assert cands[0].distance == pytest.approx(want, abs=1e-5)


def test_templates_of_another_embedder_are_never_compared(gallery: Gallery) -> None:
    v = unit(np.random.default_rng(4))[0]
    gallery.add_template(
        gallery.add_person("Dan"), v, content_hash="d", embedder="other-net", embedder_version="2"
    )
    with pytest.raises(GalleryError, match="different embedders cannot be compared"):
        gallery.search(v, KEY)
    with pytest.raises(GalleryError, match="dimensions"):
        gallery.add_template(
            "Dan",
            unit(np.random.default_rng(5), dim=64)[0],
            content_hash="e",
            embedder="other-net",
            embedder_version="2",
        )


def test_empty_gallery_gives_no_candidates(gallery: Gallery) -> None:
    assert gallery.search(unit(np.random.default_rng(6)), KEY, top_k=3) == [()]


def test_rename_merge_delete(gallery: Gallery) -> None:
    rng = np.random.default_rng(7)
    v = unit(rng, 3)
    e1 = gallery.add_person("Eve", {"a": 1})
    e2 = gallery.add_person("Eve B.", {"b": 2})
    gallery.add_template(e1, v[0], content_hash="x", **EMB)
    gallery.add_template(e2, v[0], content_hash="x", **EMB)  # the same image under both
    gallery.add_template(e2, v[1], content_hash="y", **EMB)
    gallery.rename("Eve", "Eve Smith")
    merged = gallery.merge("Eve B.", "Eve Smith")
    assert merged.id == e1 and merged.n_templates == 2 and merged.metadata == {"a": 1, "b": 2}
    assert gallery.find("Eve B.") is None
    assert gallery.delete("Eve Smith") == 2
    assert gallery.people() == [] and gallery.templates() == []
    with pytest.raises(GalleryError, match="no person"):
        gallery.person("Eve Smith")


def test_delete_leaves_no_biometric_bytes(gallery_url: str, bytes_on_disk) -> None:
    """The files hold none of a deleted person's bytes while the gallery is still open (on close SQLite
    folds the log into the main file anyway, which would hide a WAL that kept them). PostgreSQL: its
    data files, once the deletion's VACUUM ran and a checkpoint wrote the pages (see bytes_on_disk)."""
    rng = np.random.default_rng(8)
    secret = unit(rng)[0]
    needle = secret.astype("<f4").tobytes()
    fragments = (needle[:32], needle[-32:], b"Frank Secret", b"/photos/frank.jpg", b"f" * 64)
    on_disk = bytes_on_disk

    with Gallery.open(gallery_url) as g:
        g.add_template(
            g.add_person("Frank Secret"),
            secret,
            content_hash="f" * 64,
            source_path="/photos/frank.jpg",
            **EMB,
        )
        keep = g.add_person("Grace")
        for i, v in enumerate(unit(rng, 50)):
            g.add_template(keep, v, content_hash=f"g{i}", **EMB)
        raw = on_disk()
        assert all(fragment in raw for fragment in fragments)  # the check below can see them
        g.delete("Frank Secret")
        raw = on_disk()
        for fragment in fragments:
            assert fragment not in raw
        assert [p.name for p in g.people()] == ["Grace"]
        assert all(t.content_hash != "f" * 64 for t in g.templates())
        assert g.store.integrity_check() == ["ok"]


def test_export_import_round_trip(tmp_path: Path, new_gallery_url) -> None:
    rng = np.random.default_rng(9)
    vectors = unit(rng, 4)
    with Gallery.open(new_gallery_url("a")) as a:
        for i, name in enumerate(["Hal", "Ivy"]):
            pid = a.add_person(name, {"n": i})
            a.add_template(pid, vectors[2 * i], content_hash=f"{i}a", **EMB)
            a.add_template(pid, vectors[2 * i + 1], content_hash=f"{i}b", **EMB)
        assert a.export_json(tmp_path / "out.json") == 4
    with Gallery.open(new_gallery_url("b")) as b:
        assert b.import_json(tmp_path / "out.json") == 4
        assert b.import_json(tmp_path / "out.json") == 0  # already there
        assert [(p.name, p.n_templates, p.metadata) for p in b.people()] == [
            ("Hal", 2, {"n": 0}),
            ("Ivy", 2, {"n": 1}),
        ]
        got = np.stack([t.embedding for t in b.templates()])
        np.testing.assert_array_equal(got, vectors)
    (tmp_path / "bad.json").write_text('{"format": "something-else"}')
    with Gallery.open(new_gallery_url("c")) as c, pytest.raises(GalleryError, match=r"bad\.json"):
        c.import_json(tmp_path / "bad.json")


def test_damaged_file_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    with Gallery.open(path) as g:
        for i, v in enumerate(unit(np.random.default_rng(10), 200)):
            g.add_template(g.add_person(f"p{i}"), v, content_hash=str(i), **EMB)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the first page: schema and table roots
    path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=re.escape(str(path))), Gallery.open(path) as g:
        g.people()
    path.write_bytes(b"this is a text file, not a gallery\n")
    with pytest.raises(GalleryError, match=f"{re.escape(str(path))}.*not a gallery"):
        Gallery.open(path)


def test_foreign_and_newer_databases_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    db.commit()
    db.close()
    with pytest.raises(GalleryError, match="not a faceprint gallery"):
        Gallery.open(foreign)
    assert sqlite3.connect(foreign).execute("SELECT name FROM sqlite_master").fetchall() == [("invoices",)]

    newer = tmp_path / "newer.sqlite3"
    Gallery.open(newer).close()
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(GalleryError, match="newer"):
        Gallery.open(newer)


DEFAULT = EmbedderKey("dlib-resnet", "2+flip")  # the default embedder's version: flip on


def test_thresholds_per_gallery_override_the_builtin(gallery: Gallery) -> None:
    builtin = gallery.calibration(DEFAULT)
    assert 0 < builtin.threshold < 2
    assert builtin.confidence(builtin.threshold - 0.2) > 0.5 > builtin.confidence(builtin.threshold + 0.4)
    assert builtin.confidence(builtin.threshold) == pytest.approx(0.5)  # agrees with the decision
    assert builtin.strangers is not None
    gallery.set_threshold(DEFAULT, 0.3)
    assert gallery.calibration(DEFAULT).threshold == 0.3
    gallery.set_threshold(DEFAULT, None)
    assert gallery.calibration(DEFAULT).threshold == builtin.threshold
    with pytest.raises(GalleryError, match="no calibrated threshold"):
        gallery.calibration(EmbedderKey("mystery-net", "1"))
    assert gallery.calibration(EmbedderKey("mystery-net", "1"), 0.8).threshold == 0.8


def test_settings_are_per_embedder_version_and_read_old_name_only_keys(gallery: Gallery) -> None:
    one_view = EmbedderKey("dlib-resnet", "2")
    builtin_flip, builtin_one = gallery.calibration(DEFAULT), gallery.calibration(one_view)
    assert builtin_flip.threshold != builtin_one.threshold  # the table is keyed by version
    gallery.set_threshold(one_view, 0.31)
    assert gallery.calibration(one_view).threshold == 0.31
    assert gallery.calibration(DEFAULT).threshold == builtin_flip.threshold
    # A stored calibration applies to the version it was fitted on only.
    fitted = replace(builtin_one, threshold=0.29, version="2", source="own pairs")
    gallery.save_calibration(fitted)
    assert gallery.calibration(DEFAULT) == builtin_flip
    assert gallery.calibration(one_view).source == "own pairs"
    # Galleries written before versions keyed their settings by name alone: those still apply to every
    # version without a setting of its own.
    gallery.store.set_setting("threshold:dlib-resnet", "0.33")
    gallery.store.set_setting("calibration:dlib-resnet", replace(builtin_flip, source="old").to_json())
    assert gallery.calibration(DEFAULT).threshold == 0.33
    assert gallery.calibration(DEFAULT).source == "old"
    assert gallery.calibration(one_view).threshold == 0.31  # its own setting wins
    gallery.set_threshold(DEFAULT, None)  # a reset drops the old name-only setting too
    assert gallery.calibration(DEFAULT).threshold == builtin_flip.threshold
    with pytest.raises(GalleryError, match="version"):
        gallery.save_calibration(replace(fitted, version=""))


def test_default_path_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPRINT_GALLERY", str(tmp_path / "env.sqlite3"))
    with Gallery.open() as g:
        g.add_person("Jo")
    assert (tmp_path / "env.sqlite3").is_file()


def test_default_gallery_may_be_a_store_url(gallery_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPRINT_GALLERY", gallery_url)
    with Gallery.open() as g:
        assert g.location.endswith(gallery_url.rsplit("/", 1)[1])
        g.add_person("Jo")
    with Gallery.open(gallery_url) as g:
        assert [p.name for p in g.people()] == ["Jo"]


def test_corrections_round_trip_filter_and_follow_merges(gallery: Gallery) -> None:
    rng = np.random.default_rng(11)
    v = unit(rng, 3)
    ann, bob = gallery.add_person("Ann"), gallery.add_person("Bob")
    other = EmbedderKey("dlib-resnet", "other")
    r1 = gallery.add_correction("Ann", "reject", v[0] * 3.0, KEY, content_hash="p1")
    gallery.add_correction(bob, "confirm", v[1], KEY)
    gallery.add_correction(ann, "reject", v[2], other)
    got = gallery.corrections(KEY, "Ann")
    assert [(c.id, c.kind, c.person_id, c.content_hash) for c in got] == [(r1, "reject", ann, "p1")]
    # stored normalised: scaling by 3 and dividing by the norm rounds each float32 value by ~1 ulp
    np.testing.assert_allclose(got[0].embedding, v[0], atol=1e-6)
    assert [c.kind for c in gallery.corrections(KEY)] == ["reject", "confirm"]
    assert [c.person_id for c in gallery.corrections(KEY, kind="confirm")] == [bob]
    with pytest.raises(GalleryError, match="kind"):
        gallery.add_correction(ann, "maybe", v[0], KEY)  # type: ignore[arg-type]
    gallery.add_template(ann, v[1], content_hash="t", **EMB)
    gallery.merge("Ann", "Bob")  # Ann was Bob: what was said about Ann now holds for Bob
    assert sorted(c.kind for c in gallery.corrections(KEY, "Bob")) == ["confirm", "reject"]
    assert gallery.delete_correction(gallery.corrections(KEY, "Bob", "confirm")[0].id)
    assert [c.kind for c in gallery.corrections(KEY)] == ["reject"]


def test_deleting_a_person_erases_their_corrections(gallery_url: str, bytes_on_disk) -> None:
    rng = np.random.default_rng(12)
    probe = unit(rng)[0]
    with Gallery.open(gallery_url) as g:
        hal = g.add_person("Hal")
        g.add_template(hal, unit(rng)[0], content_hash="h", **EMB)
        g.add_correction(hal, "reject", probe, KEY, content_hash="c" * 64)
        g.delete("Hal")
        assert g.corrections(KEY) == []
    raw = bytes_on_disk()
    needle = probe.astype("<f4").tobytes()
    for fragment in (needle[:32], needle[-32:], b"c" * 64):
        assert fragment not in raw


def test_a_gallery_of_schema_1_gains_the_corrections_table(tmp_path: Path) -> None:
    from faceprint.gallery import sqlite as store_module

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    store_module.MIGRATIONS[0](db)
    db.execute(f"PRAGMA application_id = {store_module.APPLICATION_ID}")
    db.execute("PRAGMA user_version = 1")
    db.execute("COMMIT")
    db.close()
    with Gallery.open(path) as g:
        pid = g.add_person("Ivy")
        g.add_correction(pid, "reject", unit(np.random.default_rng(13))[0], KEY)
        assert len(g.corrections(KEY, pid)) == 1
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_postgres_refuses_a_foreign_or_newer_schema(postgres_server) -> None:
    from faceprint.gallery import postgres

    foreign = postgres_server.new_database()
    try:
        with psycopg_connect(foreign) as db:
            db.execute("CREATE SCHEMA faceprint")
            db.execute("CREATE TABLE faceprint.invoices (id integer PRIMARY KEY, total real)")
        with pytest.raises(GalleryError, match="not a faceprint gallery"):
            Gallery.open(foreign)
        with psycopg_connect(foreign) as db:  # left as it was
            tables = db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'faceprint'"
            )
            assert tables.fetchall() == [("invoices",)]
    finally:
        postgres_server.drop(foreign)

    newer = postgres_server.new_database()
    try:
        Gallery.open(newer).close()
        with psycopg_connect(newer) as db:
            db.execute("UPDATE faceprint.schema_version SET version = %s", (postgres.SCHEMA_VERSION + 1,))
        with pytest.raises(GalleryError, match="newer"):
            Gallery.open(newer)
    finally:
        postgres_server.drop(newer)


def test_postgres_unreachable_server_and_bad_url_are_one_line_errors(tmp_path: Path) -> None:
    pytest.importorskip("psycopg", reason="needs faceprint[postgres]")
    url = f"postgresql://nobody:s3cret@/gallery?host={tmp_path}"  # no server listens on that socket folder
    with pytest.raises(GalleryError) as caught:
        Gallery.open(url)
    message = str(caught.value)
    assert "cannot open the gallery database" in message and "\n" not in message
    assert "s3cret" not in message  # the password never appears in messages
    with pytest.raises(GalleryError, match="not a valid gallery URL"):
        Gallery.open(Path("postgresql://host/db"))  # what pathlib makes of a URL


def test_postgres_embedders_get_their_own_hnsw_index(postgres_server) -> None:
    """Each embedder version gets a partial HNSW index, and the store's HNSW search uses it and agrees
    with exact search on a gallery this small."""
    from faceprint.gallery.postgres import hnsw_index_name

    url = postgres_server.new_database()
    try:
        rng = np.random.default_rng(14)
        vectors = unit(rng, 200)
        other = EmbedderKey("facenet", "1")
        with Gallery.open(url) as g:
            with g.store.transaction():
                for i, v in enumerate(vectors):
                    g.add_template(g.add_person(f"p{i}"), v, content_hash=str(i), **EMB)
                g.add_template(
                    "p0", unit(rng, dim=64)[0], content_hash="o", embedder="facenet", embedder_version="1"
                )
            with psycopg_connect(url) as db:
                names = {
                    r[0]
                    for r in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'faceprint'")
                }
                plan = "\n".join(
                    r[0]
                    for r in db.execute(
                        "EXPLAIN SELECT id FROM faceprint.templates WHERE embedder = 'dlib-resnet' "
                        "AND embedder_version = '1' "
                        "ORDER BY embedding::vector(128) <#> %s::vector(128) LIMIT 3",
                        (str(vectors[0].tolist()),),
                    )
                )
            assert {hnsw_index_name(KEY), hnsw_index_name(other)} <= names
            assert hnsw_index_name(KEY) in plan
            probes = vectors[:20] + 0.05 * unit(rng, 20)
            probes /= np.linalg.norm(probes, axis=1, keepdims=True)
            ids, pids, dists = g.store.nearest_templates(KEY, probes, k=3)
            assert ids.shape == (20, 3)
            exact = np.sort(np.linalg.norm(vectors[None] - probes[:, None], axis=2), axis=1)[:, :3]
            # float32 vectors, distances from pgvector's float inner product.
            np.testing.assert_allclose(dists, exact, atol=1e-4)
            assert [g.find(int(p)).name for p in pids[:, 0]] == [f"p{i}" for i in range(20)]
            (dist_other,) = g.store.nearest_templates(other, unit(rng, dim=64), k=5)[2]
            assert len(dist_other) == 1  # the other embedder's vectors only
    finally:
        postgres_server.drop(url)


def psycopg_connect(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)
