"""The service as a user starts it: `faceprint keys create` then `faceprint serve` in a real uvicorn
process on 127.0.0.1, called over HTTP (identify, the event stream), stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-c", "from faceprint.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        **kwargs,
    )


def test_keys_cli_and_a_real_server(tmp_path: Path, knn_dir: Path, faces_dir: Path, server_factory):
    gallery = tmp_path / "people.sqlite3"
    created = _cli("keys", "create", "--role", "admin", "--name", "ops", "--gallery", str(gallery))
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("fp_") and "created" in created.stderr
    assert (tmp_path / "people.service.sqlite3").is_file()
    assert token.split("_")[-1] not in (tmp_path / "people.service.sqlite3").read_bytes().decode("latin-1")
    listed = _cli("keys", "list", "--gallery", str(gallery)).stdout
    key_id = token.split("_")[1]
    assert key_id in listed and "admin" in listed and "active" in listed
    bad = _cli("keys", "create", "--role", "root", "--gallery", str(gallery))
    assert bad.returncode == 1 and "unknown role" in bad.stderr and "Traceback" not in bad.stderr

    server = server_factory(gallery)
    h = {"X-API-Key": token}
    server.wait_ready(token)
    docs = httpx.get(server.url + "/docs", timeout=10)
    assert docs.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in docs.text  # no CDN
    assert httpx.get(server.url + "/docs/static/swagger-ui-bundle.js", timeout=10).status_code == 200
    assert httpx.get(server.url + "/openapi.json", timeout=10).json()["paths"]["/api/v1/identify"]
    events: list[dict] = []
    subscribed = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", server.url + "/api/v1/events", headers=h, timeout=60) as stream:
            for line in stream.iter_lines():
                subscribed.set()  # the server's first line (": connected") comes once we are subscribed
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert subscribed.wait(30)
    with httpx.Client(base_url=server.url, headers=h, timeout=60) as client:
        enrolled = client.post(
            "/api/v1/enroll",
            data={"name": "biden"},
            files={"image": (knn_dir / "train" / "biden" / "biden.jpg").read_bytes()},
        )
        assert enrolled.json()["status"] == "enrolled", enrolled.text
        photo = (faces_dir / "face_recognition" / "examples" / "two_people.jpg").read_bytes()
        found = client.post("/api/v1/identify", files={"image": ("p.jpg", photo, "image/jpeg")}).json()
        assert sorted(f["name"] for f in found["faces"]) == ["biden", "unknown"]
    listener.join(20)
    assert events and events[0]["event"] == "recognized" and events[0]["result_id"] == found["result_id"]

    revoked = _cli("keys", "revoke", key_id, "--gallery", str(gallery))
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert httpx.get(server.url + "/api/v1/people", headers=h, timeout=10).status_code == 401
    output = server.stop()
    # uvicorn shuts down cleanly on SIGTERM, then re-raises it (exit by the signal, as a supervisor expects).
    assert server.proc.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output
    # The clean shutdown saved the unknown face (the other person in the photo) for review.
    saved = json.loads((tmp_path / "people.service.unknowns" / "clusters.json").read_text())
    assert len(saved["clusters"]) == 1
