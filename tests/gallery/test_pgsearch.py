"""A large PostgreSQL gallery is searched in the database (pgvector's HNSW indexes over the people's
means, ``person_means``, or over the templates) and no process loads every template. The crossover is
forced down so that a gallery of real LFW faces plus synthetic faces drawn to match them (1,000 people,
a real graph) takes that path: same answers as exact search, means kept exact by every write (merges,
deletions, another process's writes), and the migration fills the table of an older gallery."""

from __future__ import annotations

import numpy as np
import pytest

from faceprint.gallery import DatabaseIndex, EmbedderKey, Gallery, MatchIndex

KEY = EmbedderKey("dlib-resnet", "test")
EMB = {"embedder": KEY.name, "embedder_version": KEY.version}
N_PEOPLE = 1000


@pytest.fixture(scope="module")
def faces(lfw_faces) -> dict[str, np.ndarray]:
    """Gallery: the real people (3 photos each) and synthetic people (1-3 faces each) up to N_PEOPLE;
    probes: each real person's 4th photo and a fresh face of 100 synthetic people."""
    from faceprint.evaluation import synthetic

    real, ids = lfw_faces
    rng = np.random.default_rng(23)
    model = synthetic.fit(real, ids)
    n_real = int(ids.max()) + 1
    counts = rng.integers(2, 5, N_PEOPLE - n_real)  # 1-3 enrolled faces + 1 probe
    fake, fake_ids = model.sample(N_PEOPLE - n_real, counts, rng)
    fake_ids += n_real
    last = np.r_[np.flatnonzero(np.diff(fake_ids)), len(fake_ids) - 1]
    enrolled = np.ones(len(fake), bool)
    enrolled[last] = False
    first3 = np.concatenate([np.flatnonzero(ids == p)[:3] for p in range(n_real)])
    fourth = np.concatenate([np.flatnonzero(ids == p)[3:4] for p in range(n_real)])
    return {
        "vectors": np.concatenate([real[first3], fake[enrolled]]),
        "persons": np.concatenate([ids[first3], fake_ids[enrolled]]),
        "real_probes": real[fourth],
        "real_probe_ids": ids[fourth],
        "probes": np.concatenate([real[fourth], fake[last[:100]]]),
    }


@pytest.fixture(scope="module")
def filled_database(postgres_server, faces) -> str:
    """A database holding the gallery, the template each test's copy is made from."""
    url = postgres_server.new_database()
    with Gallery.open(url) as g:
        fill(g, faces["vectors"], faces["persons"])
    return url.split("?", 1)[0].rsplit("/", 1)[1]


@pytest.fixture()
def url(postgres_server, filled_database, request: pytest.FixtureRequest) -> str:
    made = postgres_server.new_database(filled_database)
    request.addfinalizer(lambda: postgres_server.drop(made))
    return made


def fill(gallery: Gallery, vectors: np.ndarray, persons: np.ndarray) -> None:
    with gallery.store.transaction():
        ids = {p: gallery.add_person(f"person {p}") for p in np.unique(persons).tolist()}
        for i, (v, p) in enumerate(zip(vectors, persons.tolist(), strict=True)):
            gallery.add_template(ids[p], v, content_hash=f"h{i}", **EMB)


def no_template_loading(gallery: Gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make loading every template (what exact search needs) fail the test."""

    def refuse(key):
        raise AssertionError("the database search path loaded every template")

    one_person = gallery.store.templates

    def templates(person_id=None):
        if person_id is None:
            refuse(None)
        return one_person(person_id)

    monkeypatch.setattr(gallery.store, "matrix", refuse)
    monkeypatch.setattr(gallery.store, "templates", templates)


def ids_and_distances(found) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([[c.person_id for c in row] for row in found]),
        np.array([[c.distance for c in row] for row in found]),
    )


def stored_means(url: str) -> dict[int, tuple[int, np.ndarray]]:
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(url, autocommit=True) as db:
        register_vector(db)
        rows = db.execute(
            "SELECT person_id, n_templates, mean FROM faceprint.person_means WHERE embedder = %s "
            "AND embedder_version = %s",
            (KEY.name, KEY.version),
        ).fetchall()
    return {int(p): (int(n), np.asarray(m.to_numpy(), np.float32)) for p, n, m in rows}


def assert_means_are_exact(gallery: Gallery, url: str) -> None:
    """Every person's stored mean is the normalised mean of their templates, and nobody else has one."""
    matrix = gallery.store.matrix(KEY)
    want = {}
    for pid in np.unique(matrix.person_ids).tolist():
        rows = matrix.embeddings[matrix.person_ids == pid]
        total = rows.sum(axis=0)
        want[pid] = (len(rows), total / np.linalg.norm(total))
    got = stored_means(url)
    assert got.keys() == want.keys()
    for pid, (n, mean) in want.items():
        assert got[pid][0] == n
        # pgvector sums in double precision, NumPy in float32: 1e-5 on unit-vector components.
        np.testing.assert_allclose(got[pid][1], mean, atol=1e-5)


@pytest.mark.parametrize("combine", ["mean", "nearest"])
def test_database_search_answers_as_exact_search_on_real_faces(
    url: str, faces, combine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = faces["probes"]
    with Gallery.open(url, combine=combine, database_search_from=10**9) as exact:
        want_ids, want_dist = ids_and_distances(exact.search(probes, KEY, top_k=5))
        want_counts = exact.template_counts(KEY)
        names_of = {p.id: p.name for p in exact.people()}
        assert isinstance(exact._index(KEY)[0], MatchIndex)
    with Gallery.open(url, combine=combine, database_search_from=0) as g:
        no_template_loading(g, monkeypatch)
        found = g.search(probes, KEY, top_k=5)
        assert isinstance(g._index(KEY)[0], DatabaseIndex)
        got_ids, got_dist = ids_and_distances(found)
        # Top-1 as exact search on every probe (real and synthetic), and the top-5 people.
        np.testing.assert_array_equal(got_ids[:, 0], want_ids[:, 0])
        assert np.mean([set(a) == set(b) for a, b in zip(got_ids, want_ids, strict=True)]) >= 0.99
        # pgvector's inner product (its own summation order, double-precision means) vs float32 BLAS.
        np.testing.assert_allclose(got_dist[:, 0], want_dist[:, 0], atol=1e-5)
        assert g.template_counts(KEY) == want_counts
        # One person's distance, computed from their templates alone, is the one search gives.
        top = [row[0] for row in found[:5]]
        for probe, best in zip(probes[:5], top, strict=True):
            np.testing.assert_allclose(g.distances_to(best.person_id, probe, KEY), [best.distance], atol=1e-5)
        names = [row[0].name for row in found[: len(faces["real_probes"])]]
        # Names of the returned people come with them, as the exact path's name table gives them.
        assert [row[0].name for row in found] == [names_of[i] for i in want_ids[:, 0]]
        hits = [n == f"person {i}" for i, n in zip(faces["real_probe_ids"], names, strict=True)]
        assert sum(hits) >= 2 / 3 * len(hits), names


def test_the_crossover_decides_the_path(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from faceprint.gallery import ann

    with Gallery.open(url) as g:
        people = sum(g.template_counts(KEY).values())
        assert isinstance(g._index(KEY)[0], MatchIndex)  # 1,000 people: below the default crossover
        monkeypatch.setattr(ann, "ANN_MIN_VECTORS", people)
        g.add_person("nobody yet")  # a write: the next search looks again
        assert isinstance(g._index(KEY)[0], DatabaseIndex)
        g.combine = "nearest"  # more templates than people: still above
        assert isinstance(g._index(KEY)[0], DatabaseIndex)
        monkeypatch.setattr(ann, "ANN_MIN_VECTORS", people + 1)
        g.combine = "mean"
        assert isinstance(g._index(KEY)[0], MatchIndex)


def test_deleted_and_merged_people_are_never_returned_and_merges_update_the_mean(
    url: str, faces, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = faces["real_probes"]
    with Gallery.open(url, database_search_from=0) as g:
        first = g.search(real, KEY, top_k=1)
        assert first[0][0].name == "person 0" and first[1][0].name == "person 1"
        # Delete person 0: never returned, at any depth; their mean row is gone.
        gone = g.person("person 0").id
        g.delete("person 0")
        for combine in ("mean", "nearest"):
            g.combine = combine
            found = g.search(real, KEY, top_k=50)
            assert all(c.person_id != gone for row in found for c in row)
        g.combine = "mean"
        # Merge person 1 into person 2: person 1 is never returned, person 2 has all six templates, and
        # the mean of those six finds person 2 at distance ~0 (the search compares with the new mean).
        source, target = g.person("person 1").id, g.person("person 2").id
        g.merge("person 1", "person 2")
        found = g.search(real, KEY, top_k=50)
        assert all(c.person_id != source for row in found for c in row)
        six = np.stack([t.embedding for t in g.templates(target)]).sum(axis=0)
        best = g.search(six / np.linalg.norm(six), KEY)[0][0]
        assert best.person_id == target and best.distance < 1e-3
        assert g.person(target).n_templates == 6
        means = stored_means(url)
        assert gone not in means and source not in means and means[target][0] == 6
        # Deleting one template updates the mean too.
        g.delete_template(g.templates(target)[0].id)
        assert stored_means(url)[target][0] == 5
        assert_means_are_exact(g, url)
        no_template_loading(g, monkeypatch)
        g.search(real, KEY)


def test_two_galleries_on_one_database_see_each_others_writes(
    url: str, faces, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, rng = faces["real_probes"], np.random.default_rng(5)
    with Gallery.open(url, database_search_from=0) as reader, Gallery.open(url) as writer:
        no_template_loading(reader, monkeypatch)
        assert reader.search(real[:1], KEY)[0][0].name == "person 0"
        before = reader.template_counts(KEY)
        # The writer enrols a newcomer whose template is person 0's probe photo itself.
        writer.add_template(writer.add_person("newcomer"), real[0], content_hash="new", **EMB)
        best = reader.search(real[:1], KEY)[0][0]
        assert best.name == "newcomer" and best.distance < 1e-3
        assert reader.template_counts(KEY) == {**before, 1: before.get(1, 0) + 1}
        # ...then gives person 3 a new template (their mean moves onto the probe) and deletes newcomer.
        noise = rng.standard_normal(real.shape[1]).astype(np.float32) * 0.01
        for i in range(3):
            writer.add_template("person 3", real[3] + noise * i, content_hash=f"more{i}", **EMB)
        writer.delete("newcomer")
        found = reader.search(real[[0, 3]], KEY, top_k=3)
        assert all(c.name != "newcomer" for row in found for c in row)
        assert found[0][0].name == "person 0" and found[1][0].name == "person 3"
        assert reader.template_counts(KEY) == {
            k: n for k, n in {**before, 3: before[3] - 1, 6: before.get(6, 0) + 1}.items() if n
        }
    with Gallery.open(url) as g:
        assert_means_are_exact(g, url)
        assert g.store.integrity_check() == ["ok"]


def test_migration_fills_the_means_of_a_gallery_of_the_previous_schema(url: str, faces) -> None:
    """Take the gallery back to schema version 1 (no person_means, no trigger), reopen it: the migration
    fills every person's mean from their templates, indexes it, and search goes through it."""
    import psycopg

    from faceprint.gallery import postgres

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP TABLE faceprint.person_means")
        for event in ("inserted", "deleted", "updated"):
            db.execute(f"DROP FUNCTION faceprint.templates_{event}() CASCADE")
        db.execute("DROP FUNCTION faceprint.refresh_person_means(bigint[])")
        db.execute("DROP TABLE faceprint.changes")  # and what version 3 added
        db.execute("DROP FUNCTION faceprint.log_change() CASCADE")
        db.execute("DELETE FROM faceprint.meta WHERE key = 'changes_from'")
        db.execute("UPDATE faceprint.schema_version SET version = 1")
    with Gallery.open(url, database_search_from=0) as g:
        with psycopg.connect(url, autocommit=True) as db:
            (version,) = db.execute("SELECT version FROM faceprint.schema_version").fetchone()
            indexes = {
                r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'faceprint'")
            }
        assert version == postgres.SCHEMA_VERSION
        assert postgres.hnsw_index_name(KEY, "person_means") in indexes
        assert_means_are_exact(g, url)
        assert sum(g.template_counts(KEY).values()) == N_PEOPLE
        found = g.search(faces["real_probes"], KEY)
        assert found[0][0].name == "person 0"
        # The trigger is back: a new template moves the mean.
        g.add_template("person 0", faces["real_probes"][0], content_hash="fourth", **EMB)
        assert stored_means(url)[g.person("person 0").id][0] == 4


def test_concurrent_writers_of_one_person_keep_the_mean_exact(url: str, faces) -> None:
    """Two threads (two connections, two transactions at a time) enrol templates of the same person and
    delete some, at once: no deadlock, no lost update; the stored mean is that of what is there."""
    import threading

    dim = faces["vectors"].shape[1]
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    with Gallery.open(url, database_search_from=0) as g:
        pid = g.add_person("contested")

        def writer(tag: str) -> None:
            try:
                start.wait()
                vectors = np.random.default_rng(ord(tag)).standard_normal((12, dim)).astype(np.float32)
                for i, v in enumerate(vectors):
                    tid = g.add_template(pid, v, content_hash=f"{tag}{i}", **EMB)
                    if i % 4 == 3:
                        g.delete_template(tid)
            except BaseException as err:  # re-raised in the test's thread below
                errors.append(err)

        threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert stored_means(url)[pid][0] == 18
        assert_means_are_exact(g, url)
        assert g.store.integrity_check() == ["ok"]
