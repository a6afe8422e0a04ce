"""The HNSW index of large SQLite galleries (gallery/ann.py) on real LFW faces plus synthetic faces drawn
to match them: same answers as exact search, kept up to date incrementally by enrolment and deletion (in
this process or another), rebuilt when its files are stale or damaged, and never holding a deleted
person, neither in search results nor in the index file's bytes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from faceprint.gallery import EmbedderKey, Gallery, MatchIndex, ann
from faceprint.gallery.store import TemplateMatrix

pytest.importorskip("hnswlib", reason="the ANN index needs hnswlib (pip install faceprint[ann])")

REPO = Path(__file__).resolve().parents[2]
KEY = EmbedderKey("dlib-resnet", "test")
EMB = {"embedder": KEY.name, "embedder_version": KEY.version}
# A few thousand people: large enough for a real graph (many layers, pruned neighbour lists), small
# enough that hnswlib's search at the default ef visits nearly all of it, so it must equal exact search.
N_PEOPLE = 3000


@pytest.fixture(scope="module")
def faces(lfw_faces) -> dict[str, np.ndarray]:
    """Gallery: the real people (3 photos each) and synthetic people (2 faces each) up to N_PEOPLE;
    probes: each real person's 4th photo and a fresh face of 200 synthetic people."""
    from faceprint.evaluation import synthetic

    real, ids = lfw_faces
    rng = np.random.default_rng(17)
    model = synthetic.fit(real, ids)
    n_real = int(ids.max()) + 1
    fake, fake_ids = model.sample(N_PEOPLE - n_real, 3, rng)
    fake_ids += n_real
    first3 = np.concatenate([np.flatnonzero(ids == p)[:3] for p in range(n_real)])
    fourth = np.concatenate([np.flatnonzero(ids == p)[3:4] for p in range(n_real)])
    gallery_fake = np.ones(len(fake), bool)
    gallery_fake[2::3] = False  # every third synthetic face is a probe, not enrolled
    probes_fake = fake[~gallery_fake][:200]
    return {
        "vectors": np.concatenate([real[first3], fake[gallery_fake]]),
        "persons": np.concatenate([ids[first3], fake_ids[gallery_fake]]),
        "real_probes": real[fourth],
        "real_probe_ids": ids[fourth],
        "probes": np.concatenate([real[fourth], probes_fake]),
    }


def fill(gallery: Gallery, vectors: np.ndarray, persons: np.ndarray) -> None:
    with gallery.store.transaction():
        ids = {p: gallery.add_person(f"person {p}") for p in np.unique(persons).tolist()}
        for i, (v, p) in enumerate(zip(vectors, persons.tolist(), strict=True)):
            gallery.add_template(ids[p], v, content_hash=f"h{i}", **EMB)


def exact(gallery: Gallery) -> MatchIndex:
    return MatchIndex(gallery.store.matrix(KEY), gallery.combine)


@pytest.fixture()
def big(tmp_path: Path, faces, monkeypatch: pytest.MonkeyPatch):
    """A gallery searched through the ANN index (the crossover lowered below its size)."""
    monkeypatch.setattr(ann, "ANN_MIN_VECTORS", 1000)
    path = tmp_path / "g.sqlite3"
    with Gallery.open(path) as g:
        fill(g, faces["vectors"], faces["persons"])
        yield g


def searched_with(gallery: Gallery):
    return gallery._index(KEY)[0]


@pytest.mark.parametrize("combine", ["mean", "nearest"])
def test_ann_answers_as_exact_search_on_real_faces(big: Gallery, faces, combine: str) -> None:
    big.combine = combine
    probes = faces["probes"]
    found = big.search(probes, KEY, top_k=5)
    assert isinstance(searched_with(big), ann.AnnIndex)
    want_ids, want_dist = exact(big).search(probes, 5)
    got_ids = np.array([[c.person_id for c in row] for row in found])
    got_dist = np.array([[c.distance for c in row] for row in found])
    # Recall 1.0 at k=1 and k=5 on real faces and on synthetic ones.
    np.testing.assert_array_equal(got_ids, want_ids)
    # float32 inner products summed in another order (hnswlib's SIMD vs BLAS): 1e-5 on a distance.
    np.testing.assert_allclose(got_dist, want_dist, atol=1e-5)
    # Most real people are found as themselves from their unenrolled 4th photo (not all: the ~3000
    # synthetic people are drawn from the real faces' distribution, so some land nearer).
    names = [row[0].name for row in found[: len(faces["real_probes"])]]
    hits = [n == f"person {i}" for i, n in zip(faces["real_probe_ids"], names, strict=True)]
    assert sum(hits) >= 2 / 3 * len(hits), names
    assert (big.store.path.parent / "g.sqlite3.index" / f"{KEY.name}@{KEY.version}.{combine}.hnsw").is_file()


def test_small_gallery_is_searched_exactly_and_writes_no_index(tmp_path: Path, faces) -> None:
    with Gallery.open(tmp_path / "g.sqlite3") as g:
        fill(g, faces["vectors"][:300], faces["persons"][:300])
        g.search(faces["probes"][:3], KEY)
        assert isinstance(searched_with(g), MatchIndex)
    assert not (tmp_path / "g.sqlite3.index").exists()


def test_enrol_and_delete_update_the_index_in_place(big: Gallery, faces) -> None:
    probes = faces["probes"]
    big.search(probes[:1], KEY)
    index = searched_with(big)
    graph = index._graph
    keys_before = set(index.rows()[0].tolist())
    # Enrol a new person: found at once, the graph is the same object with one more row.
    newcomer = big.add_person("newcomer")
    big.add_template(newcomer, probes[0], content_hash="new", **EMB)
    (top,) = big.search(probes[0], KEY)
    assert top[0].name == "newcomer" and top[0].distance < 1e-3
    assert searched_with(big) is index and index._graph is graph
    assert set(index.rows()[0].tolist()) == keys_before | {newcomer}
    # Delete someone else: gone from the rows, still the same graph, results equal exact search.
    victim = big.person("person 5")
    big.delete("person 5")
    assert set(index.rows()[0].tolist()) == (keys_before | {newcomer}) - {victim.id}
    assert index._graph is graph
    want, _ = exact(big).search(probes, 3)
    got = np.array([[c.person_id for c in row] for row in big.search(probes, KEY, top_k=3)])
    np.testing.assert_array_equal(got, want)


def person_vectors(gallery: Gallery, name: str) -> list[np.ndarray]:
    """A person's templates and their normalised mean: every vector an index could hold for them."""
    templates = np.stack([t.embedding for t in gallery.templates(name)])
    mean = np.add.reduceat(templates, [0], axis=0)[0]  # as MatchIndex sums them
    return [*templates, mean / np.linalg.norm(mean)]


@pytest.mark.parametrize("combine", ["mean", "nearest"])
def test_deleted_person_is_never_returned_nor_left_in_the_index_file(
    big: Gallery, faces, combine: str
) -> None:
    big.combine = combine
    graph_file = big.store.path.parent / "g.sqlite3.index" / f"{KEY.name}@{KEY.version}.{combine}.hnsw"
    probes = faces["real_probes"]
    big.search(probes, KEY)
    victim = "person 3"
    secrets = person_vectors(big, victim)
    # Their exact bytes are in the file before (so the check below can fail).
    assert any(v.astype("<f4").tobytes() in graph_file.read_bytes() for v in secrets)
    big.delete(victim)
    data = graph_file.read_bytes()
    for v in secrets:
        assert v.astype("<f4").tobytes() not in data
    for v in secrets:  # searched with their own vectors: someone else
        assert all(c.name != victim for c in big.search(v, KEY, top_k=10)[0])


def run_other_process(path: Path, script: str) -> None:
    """Run ``script`` in a fresh Python process with ``g`` open on the gallery at ``path``."""
    code = "from faceprint.gallery import Gallery, EmbedderKey\nimport numpy as np\n"
    code += f"with Gallery.open({str(path)!r}) as g:\n" + textwrap.indent(textwrap.dedent(script), "    ")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "src")})


def test_another_process_enrolling_and_deleting_is_seen(big: Gallery, faces, tmp_path: Path) -> None:
    probes = faces["real_probes"]
    big.search(probes, KEY)  # index built and saved
    np.save(tmp_path / "probe.npy", probes[2])
    run_other_process(
        big.store.path,
        f"""
        pid = g.add_person("outsider")
        g.add_template(pid, np.load({str(tmp_path / "probe.npy")!r}), embedder="{KEY.name}",
                       embedder_version="{KEY.version}", content_hash="x")
        g.delete("person 7")
        """,
    )
    (found,) = big.search(probes[2], KEY, top_k=3)
    assert found[0].name == "outsider"
    assert all(c.name != "person 7" for row in big.search(probes, KEY, top_k=10) for c in row)


def test_stale_index_files_are_brought_up_to_date_on_open(tmp_path: Path, faces, monkeypatch) -> None:
    """Another process adds templates while nobody holds the index: the next opener updates the file
    (a row added, nothing rebuilt), and a damaged file is rebuilt, not loaded."""
    monkeypatch.setattr(ann, "ANN_MIN_VECTORS", 1000)
    path = tmp_path / "g.sqlite3"
    folder = ann.index_folder(path)
    with Gallery.open(path) as g:
        fill(g, faces["vectors"], faces["persons"])
        g.search(faces["probes"][:1], KEY)
        before = ann.AnnIndex.load(folder, KEY, "mean")
    np.save(tmp_path / "probe.npy", faces["probes"][1])
    # The other process searches nothing (hnswlib unused): the index file is now stale.
    run_other_process(
        path,
        f"""
        pid = g.add_person("late")
        g.add_template(pid, np.load({str(tmp_path / "probe.npy")!r}), embedder="{KEY.name}",
                       embedder_version="{KEY.version}", content_hash="late")
        """,
    )
    with Gallery.open(path) as g:
        assert ann.AnnIndex.load(folder, KEY, "mean").generation < g.store.generation()
        (found,) = g.search(faces["probes"][1], KEY)
        assert found[0].name == "late"
        index = searched_with(g)
        assert index._next_label == before._next_label + 1  # one row added, no rebuild
        generation = g.store.generation()
    assert ann.AnnIndex.load(folder, KEY, "mean").generation == generation
    # Damage the graph: it no longer matches its bookkeeping's hash, so it is rebuilt from the store.
    graph = folder / f"{KEY.name}@{KEY.version}.mean.hnsw"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    assert ann.AnnIndex.load(folder, KEY, "mean") is None
    with Gallery.open(path) as g:
        want, _ = exact(g).search(faces["probes"], 3)
        got = np.array([[c.person_id for c in row] for row in g.search(faces["probes"], KEY, top_k=3)])
        np.testing.assert_array_equal(got, want)
    assert ann.AnnIndex.load(folder, KEY, "mean") is not None


def test_other_embedders_are_never_searched(big: Gallery, faces) -> None:
    """Templates of another embedder version are in their own index: never among the results."""
    other = EmbedderKey(KEY.name, "other")
    pid = big.add_person("other version only")
    big.add_template(pid, faces["probes"][0], content_hash="o", embedder=other.name, embedder_version="other")
    (found,) = big.search(faces["probes"][0], KEY, top_k=20)
    assert all(c.name != "other version only" for c in found)
    (found,) = big.search(faces["probes"][0], other, top_k=20)
    assert [c.name for c in found] == ["other version only"]


def test_without_hnswlib_search_is_exact_and_deletion_removes_index_files(
    big: Gallery, faces, monkeypatch: pytest.MonkeyPatch
) -> None:
    big.search(faces["probes"][:1], KEY)
    folder = ann.index_folder(big.store.path)
    assert list(folder.glob("*.hnsw"))
    monkeypatch.setattr(ann, "available", lambda: False)
    big._ann.clear()
    big.delete("person 2")
    assert not list(folder.glob("*.hnsw")) and not list(folder.glob("*.npz"))
    big.search(faces["probes"][:1], KEY)
    assert isinstance(searched_with(big), MatchIndex)


def test_index_rows_mirror_exact_search_rows() -> None:
    """The checksum notices a changed vector and a template moved to another person."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal((4, 8)).astype(np.float32)
    persons = np.array([1, 1, 2, 3])
    sums = ann.row_checksums(v, persons)
    assert len(set(sums.tolist())) == 4
    moved = ann.row_checksums(v, np.array([1, 1, 2, 2]))
    assert (moved != sums).tolist() == [False, False, False, True]
    nudged = v.copy()
    nudged[0, 3] = np.nextafter(nudged[0, 3], np.float32(2))
    assert (ann.row_checksums(nudged, persons) != sums).tolist() == [True, False, False, False]
    m = MatchIndex(TemplateMatrix(KEY, np.arange(4), persons, v), "nearest")
    keys, owners, vectors = m.rows()
    assert keys.tolist() == [0, 1, 2, 3] and owners.tolist() == [1, 1, 2, 3] and vectors.shape == (4, 8)


def test_index_file_is_erased_even_when_the_store_must_finish_erasing_later(
    tmp_path: Path, faces, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader holding an old snapshot makes the SQLite deletion end in ErasureError (its own pages are
    erased later by purge): the rows are gone, so the index files must not keep the person either."""
    import sqlite3

    from faceprint.errors import ErasureError
    from faceprint.gallery import SQLiteStore

    monkeypatch.setattr(ann, "ANN_MIN_VECTORS", 1000)
    path = tmp_path / "g.sqlite3"
    with Gallery(SQLiteStore(path, purge_timeout_s=0.3)) as g:
        fill(g, faces["vectors"], faces["persons"])
        g.search(faces["probes"][:1], KEY)
        secrets = person_vectors(g, "person 4")
        graph_file = ann.index_folder(path) / f"{KEY.name}@{KEY.version}.mean.hnsw"
        assert secrets[-1].astype("<f4").tobytes() in graph_file.read_bytes()
        reader = sqlite3.connect(path)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM templates").fetchall()  # holds a snapshot
        try:
            with pytest.raises(ErasureError):
                g.delete("person 4")
        finally:
            reader.close()
        data = graph_file.read_bytes()
        assert all(v.astype("<f4").tobytes() not in data for v in secrets)
