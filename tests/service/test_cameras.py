"""`serve --camera SOURCE`: the watch pipeline inside the service feeds the event stream and the
unknown-faces review (a folder of frames as the camera, the real pipeline and models)."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient


def test_a_camera_feeds_events_and_the_unknown_faces_review(tmp_path: Path, make_app, knn_dir: Path):
    frames = tmp_path / "camera"
    frames.mkdir()
    stranger = knn_dir / "train" / "kit_harington" / "john1.jpeg"
    for i in range(40):
        shutil.copy(stranger, frames / f"frame_{i:04d}.jpg")
    app, _, keys = make_app(tmp_path / "svc", cameras=(str(frames),))
    h = {"X-API-Key": keys["enrol"]}
    with TestClient(app) as client:
        camera = app.state.services.cameras[0]
        camera.thread.join(300)
        assert not camera.thread.is_alive() and camera.error is None
        events = client.get("/api/v1/events/recent", headers=h).json()
        kinds = [e["event"] for e in events if e.get("source") == str(frames)]
        assert "track_started" in kinds and "track_ended" in kinds
        ended = next(e for e in events if e["event"] == "track_ended")
        assert ended["name"] == "unknown" and ended["cluster"] is not None
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)
        later = client.get(f"/api/v1/events/recent?after={events[-1]['id']}", headers=h).json()
        assert later == []
        clusters = client.get("/api/v1/unknowns", headers=h).json()
        assert len(clusters) == 1 and clusters[0]["crop_url"]
        named = client.post(f"/api/v1/unknowns/{clusters[0]['id']}/assign", headers=h, json={"name": "Kit"})
        assert named.status_code == 200 and named.json()["templates_added"] >= 1
        photo = (knn_dir / "train" / "kit_harington" / "john2.jpeg").read_bytes()
        found = client.post("/api/v1/identify", headers=h, files={"image": ("k.jpg", photo)}).json()["faces"]
        assert [f["name"] for f in found] == ["Kit"]
