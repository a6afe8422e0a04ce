"""Fixtures for gallery tests on real faces. The pipeline is slow on CPU, so models load once per
session and the photos everybody needs are analysed once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def analyzer():
    from faceprint.analyzer import FaceAnalyzer

    return FaceAnalyzer()


@pytest.fixture(scope="session")
def knn_dir(faces_dir: Path) -> Path:
    """face_recognition's knn example: train/NAME/*.jpg for 5 people and test photos."""
    return faces_dir / "face_recognition" / "examples" / "knn_examples"


@pytest.fixture(scope="session")
def enrolled(tmp_path_factory: pytest.TempPathFactory, knn_dir: Path, analyzer) -> Path:
    """A gallery file holding obama and biden, one training photo each. Tests that change a gallery
    work on a copy."""
    from faceprint.gallery import Gallery
    from faceprint.recognizer import Recognizer

    path = tmp_path_factory.mktemp("enrolled") / "g.sqlite3"
    with Gallery.open(path) as g:
        for name, photo in (("obama", "obama.jpg"), ("biden", "biden2.jpg")):
            result = Recognizer(g, analyzer).enroll(name, knn_dir / "train" / name / photo)
            assert result.status == "enrolled", result
    return path


@pytest.fixture(scope="session")
def lfw_faces(lfw_dir: Path, analyzer):
    """Real embeddings of the default pipeline: 4 LFW photos each of the first 20 people (by name) with 4
    or more photos, as (vectors (N, D) float32, person numbers (N,))."""
    import numpy as np

    from faceprint.errors import FaceprintError

    people = [d for d in sorted(lfw_dir.iterdir()) if d.is_dir() and len(list(d.iterdir())) >= 4][:20]
    vectors, ids = [], []
    for i, person in enumerate(people):
        for photo in sorted(person.iterdir())[:4]:
            try:
                vectors.append(analyzer.analyze_one(photo).embedding)
                ids.append(i)
            except FaceprintError:
                continue
    return np.stack(vectors).astype(np.float32), np.array(ids)


@pytest.fixture()
def lfw_people(tmp_path: Path, lfw_dir: Path):
    """Build PEOPLE/NAME/*.jpg from LFW images (links, not copies): ``lfw_people({name: count})``."""

    def build(counts: dict[str, int]) -> Path:
        root = tmp_path / "people"
        for name, count in counts.items():
            (root / name).mkdir(parents=True)
            for image in sorted((lfw_dir / name).iterdir())[:count]:
                (root / name / image.name).symlink_to(image)
        return root

    return build


@pytest.fixture()
def bytes_on_disk(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest):
    """``bytes_on_disk()``: what the test's gallery store has written to disk, as one bytes object.
    SQLite: every file in tmp_path (the database, its WAL and shared memory). PostgreSQL: after a
    CHECKPOINT (dirty pages written out), every data file of the server except its write-ahead log, which
    keeps old row images until its segments are recycled (docs/scale.md says so)."""
    if store_kind == "sqlite":
        return lambda: b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.is_file())
    server = request.getfixturevalue("postgres_server")
    return server.data_bytes


@pytest.fixture()
def enrolled_url(store_kind: str, enrolled: Path, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A copy of the ``enrolled`` gallery (obama and biden) on this test's store kind, to change at will."""
    if store_kind == "sqlite":
        shutil.copy(enrolled, tmp_path / "g.sqlite3")
        return str(tmp_path / "g.sqlite3")
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("enrolled_postgres_template")
    url = server.new_database(template)
    request.addfinalizer(lambda: server.drop(url))
    return url


@pytest.fixture(scope="session")
def enrolled_postgres_template(
    postgres_server, enrolled: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A PostgreSQL database holding the ``enrolled`` gallery (moved over by export/import), used as the
    template that each test's copy is made from."""
    from faceprint.gallery import Gallery

    export = tmp_path_factory.mktemp("enrolled-pg") / "enrolled.json"
    with Gallery.open(enrolled) as g:
        g.export_json(export)
    url = postgres_server.new_database()
    with Gallery.open(url) as g:
        assert g.import_json(export) == 2
    return url.split("?", 1)[0].rsplit("/", 1)[1]
