"""Two `faceprint serve` replicas (real uvicorn processes on two ports) on one PostgreSQL gallery: each
sees the other's enrolments and deletions on its next request (the store's generation row changes with
every write, and a replica rebuilds its search index when it does)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-c", "from faceprint.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_two_replicas_on_one_postgres_gallery_see_each_others_writes(
    postgres_server, tmp_path: Path, knn_dir: Path, server_factory
) -> None:
    url = postgres_server.new_database()
    # Keys live in the service's own state file, not in the gallery: both replicas are given the same one.
    state = tmp_path / "service.sqlite3"
    created = _cli("keys", "create", "--role", "admin", "--gallery", url, "--state", str(state))
    assert created.returncode == 0, created.stderr
    headers = {"X-API-Key": created.stdout.strip()}
    a, b = (server_factory(url, "--state", str(state)) for _ in range(2))
    assert a.url != b.url
    for server in (a, b):
        server.wait_ready(headers["X-API-Key"])
    train = knn_dir / "train"
    group = (knn_dir / "test" / "obama_and_biden.jpg").read_bytes()

    def names(server) -> list[str]:
        people = httpx.get(server.url + "/api/v1/people", headers=headers, timeout=30)
        assert people.status_code == 200, people.text
        return sorted(p["name"] for p in people.json())

    def identified(server) -> list[str]:
        found = httpx.post(
            server.url + "/api/v1/identify",
            headers=headers,
            files={"image": ("group.jpg", group, "image/jpeg")},
            timeout=120,
        )
        assert found.status_code == 200, found.text
        return sorted(f["name"] for f in found.json()["faces"])

    def enrol(server, name: str, photo: Path) -> None:
        done = httpx.post(
            server.url + "/api/v1/enroll",
            headers=headers,
            data={"name": name},
            files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
            timeout=120,
        )
        assert done.status_code == 200 and done.json()["status"] == "enrolled", done.text

    assert identified(a) == identified(b) == ["unknown"] * 3  # both have searched the empty gallery
    enrol(a, "biden", train / "biden" / "biden.jpg")
    assert names(b) == ["biden"]
    assert identified(b) == ["biden", "unknown", "unknown"]  # B's cached index saw A's enrolment
    enrol(b, "obama", train / "obama" / "obama.jpg")
    assert names(a) == ["biden", "obama"]
    assert identified(a) == ["biden", "obama", "unknown"]
    biden = next(
        p["id"]
        for p in httpx.get(a.url + "/api/v1/people", headers=headers, timeout=30).json()
        if p["name"] == "biden"
    )
    deleted = httpx.delete(f"{b.url}/api/v1/people/{biden}", headers=headers, timeout=30)
    assert deleted.status_code == 200, deleted.text
    assert names(a) == ["obama"]
    assert identified(a) == ["obama", "unknown", "unknown"]  # deleted on B: A no longer names him
    missing = httpx.get(f"{a.url}/api/v1/people/{biden}", headers=headers, timeout=30)
    assert missing.status_code == 404
    postgres_server.drop(url)
