"""The REST API against the real app (FastAPI TestClient, real models, real SQLite files): recognition,
people, unknown faces, corrections, metrics."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import pytest


def _file(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/jpeg")


def _enrol(service, name: str, path: Path, role: str = "enrol") -> dict:
    r = service.client.post(
        "/api/v1/enroll", headers=service.h(role), data={"name": name}, files={"image": _file(path)}
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture()
def two_people(service, knn_dir: Path):
    assert _enrol(service, "obama", knn_dir / "train" / "obama" / "obama.jpg")["status"] == "enrolled"
    assert _enrol(service, "biden", knn_dir / "train" / "biden" / "biden.jpg")["status"] == "enrolled"
    return service


def test_identify_names_every_face_in_multipart_base64_and_raw_bodies(two_people, faces_dir: Path):
    photo = faces_dir / "face_recognition" / "examples" / "two_people.jpg"
    client, h = two_people.client, two_people.h("recognize")
    multipart = client.post("/api/v1/identify", headers=h, files={"image": _file(photo)}, data={"top_k": "2"})
    assert multipart.status_code == 200, multipart.text
    body = multipart.json()
    names = sorted(f["name"] for f in body["faces"])
    assert names == ["biden", "obama"]
    for face in body["faces"]:
        assert face["known"] and face["confidence"] > 0.5
        assert len(face["candidates"]) == 2 and face["candidates"][0]["name"] == face["name"]
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= body["width"] and 0 <= y1 < y2 <= body["height"]
    as_json = client.post(
        "/api/v1/recognize", headers=h, json={"image": base64.b64encode(photo.read_bytes()).decode()}
    )
    raw = client.post(
        "/api/v1/identify", headers={**h, "Content-Type": "image/jpeg"}, content=photo.read_bytes()
    )
    for other in (as_json, raw):
        assert other.status_code == 200, other.text
        assert [f["name"] for f in other.json()["faces"]] == [f["name"] for f in body["faces"]]
        assert other.json()["result_id"] != body["result_id"]


def test_detect_embed_verify(service, knn_dir: Path, default_dim: int):
    client, h = service.client, service.h("recognize")
    obama1, obama2 = knn_dir / "train" / "obama" / "obama.jpg", knn_dir / "train" / "obama" / "obama2.jpg"
    biden = knn_dir / "train" / "biden" / "biden.jpg"
    detected = client.post("/api/v1/detect", headers=h, files={"image": _file(biden)}).json()
    assert len(detected["faces"]) == 1
    face = detected["faces"][0]
    assert face["score"] > 0.9 and np.array(face["landmarks"]).shape == (5, 2)
    embedded = client.post("/api/v1/embed", headers=h, files={"image": _file(biden)}).json()
    vector = np.array(embedded["faces"][0]["embedding"])
    assert vector.shape == (default_dim,)
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-4  # L2-normalised float32, rounded by JSON floats
    same = client.post(
        "/api/v1/verify", headers=h, files={"image_a": _file(obama1), "image_b": _file(obama2)}
    ).json()
    different = client.post(
        "/api/v1/verify", headers=h, files={"image_a": _file(obama1), "image_b": _file(biden)}
    ).json()
    assert same["same"] is True and different["same"] is False
    assert same["distance"] < same["threshold"] < different["distance"]


def test_people_lifecycle_and_delete_leaves_no_picture(two_people, knn_dir: Path):
    client, h, admin = two_people.client, two_people.h("enrol"), two_people.h("admin")
    people = {p["name"]: p for p in client.get("/api/v1/people", headers=h).json()}
    assert set(people) == {"obama", "biden"}
    obama = people["obama"]
    thumb = client.get(obama["thumbnail_url"], headers=h)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff"
    added = client.post(
        f"/api/v1/people/{obama['id']}/images",
        headers=h,
        files=[("image", _file(knn_dir / "train" / "obama" / "obama2.jpg"))],
    ).json()
    assert [e["status"] for e in added["enrolments"]] == ["enrolled"]
    shown = client.get(f"/api/v1/people/{obama['id']}", headers=h).json()
    assert shown["images"] == 2 and len(shown["image_list"]) == 2
    renamed = client.patch(f"/api/v1/people/{obama['id']}", headers=h, json={"name": "Barack Obama"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Barack Obama"
    taken = client.patch(f"/api/v1/people/{obama['id']}", headers=h, json={"name": "biden"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "name_taken"
    # Remove one image: its template and thumbnail go.
    first = shown["image_list"][0]
    assert client.delete(f"/api/v1/people/{obama['id']}/images/{first['id']}", headers=h).status_code == 200
    assert client.get(first["thumbnail_url"], headers=h).status_code == 404
    # Delete: person, templates, thumbnails, with no copy of the picture left in either file.
    remaining = client.get(f"/api/v1/people/{obama['id']}", headers=h).json()["image_list"][0]
    jpeg = client.get(remaining["thumbnail_url"], headers=h).content
    assert client.delete(f"/api/v1/people/{obama['id']}", headers=h).status_code == 403  # enrol: no
    seen = client.post(
        "/api/v1/identify", headers=h, files={"image": _file(knn_dir / "train" / "obama" / "obama.jpg")}
    ).json()
    face = [f["name"] for f in seen["faces"]].index("Barack Obama")
    assert two_people.engine.recent_face(seen["result_id"], face).crop_jpeg is not None
    deleted = client.delete(f"/api/v1/people/{obama['id']}", headers=admin).json()
    # The recent result's crop of that face (kept for corrections) goes with the person.
    assert two_people.engine.recent_face(seen["result_id"], face).crop_jpeg is None
    assert deleted == {"deleted": obama["id"], "templates": 1, "thumbnails": 1}
    assert client.get(f"/api/v1/people/{obama['id']}", headers=h).status_code == 404
    assert client.get(remaining["thumbnail_url"], headers=h).status_code == 404
    engine = two_people.engine
    assert engine.gallery.templates() and all(t.person_id != obama["id"] for t in engine.gallery.templates())
    for path in two_people.folder.iterdir():
        if path.is_file():
            assert jpeg[-200:-136] not in path.read_bytes(), f"{path.name} still holds the deleted thumbnail"


def test_merge_moves_images_and_thumbnails(two_people, knn_dir: Path):
    client, h, admin = two_people.client, two_people.h("enrol"), two_people.h("admin")
    extra = _enrol(two_people, "obama twin", knn_dir / "train" / "obama" / "obama2.jpg")
    people = {p["name"]: p["id"] for p in client.get("/api/v1/people", headers=h).json()}
    url = f"/api/v1/people/{extra['person_id']}/merge"
    assert client.post(url, headers=h, json={"into": people["obama"]}).status_code == 403
    merged = client.post(url, headers=admin, json={"into": people["obama"]})
    assert merged.status_code == 200 and merged.json()["images"] == 2
    shown = client.get(f"/api/v1/people/{people['obama']}", headers=h).json()
    assert all(img["thumbnail_url"] for img in shown["image_list"])
    itself = client.post(
        f"/api/v1/people/{people['obama']}/merge", headers=admin, json={"into": people["obama"]}
    )
    assert itself.status_code == 409
    assert str(two_people.folder) not in itself.text and "g.sqlite3" not in itself.text


def test_unknown_faces_are_clustered_then_named_or_dismissed(two_people, knn_dir: Path, faces_dir):
    client, h = two_people.client, two_people.h("enrol")
    stranger = knn_dir / "train" / "rose_leslie" / "img1.jpg"
    for photo in (stranger, knn_dir / "train" / "rose_leslie" / "img2.jpg"):
        faces = client.post("/api/v1/identify", headers=h, files={"image": _file(photo)}).json()["faces"]
        assert [f["name"] for f in faces] == ["unknown"]
    other = client.post(
        "/api/v1/identify",
        headers=h,
        files={"image": _file(knn_dir / "train" / "kit_harington" / "john1.jpeg")},
    ).json()["faces"]
    assert [f["name"] for f in other] == ["unknown"]
    clusters = client.get("/api/v1/unknowns", headers=h).json()
    assert sorted(c["sightings"] for c in clusters) == [1, 2]  # rose twice, kit once
    rose = next(c for c in clusters if c["sightings"] == 2)
    kit = next(c for c in clusters if c["sightings"] == 1)
    crop = client.get(rose["crop_url"], headers=h)
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assigned = client.post(f"/api/v1/unknowns/{rose['id']}/assign", headers=h, json={"name": "Rose"}).json()
    assert assigned["templates_added"] == 2 and assigned["name"] == "Rose"
    again = client.post("/api/v1/identify", headers=h, files={"image": _file(stranger)}).json()["faces"]
    assert [f["name"] for f in again] == ["Rose"]
    assert client.post(f"/api/v1/unknowns/{kit['id']}/dismiss", headers=h).status_code == 200
    assert client.get("/api/v1/unknowns", headers=h).json() == []
    assert client.get(kit["crop_url"], headers=h).status_code == 404
    # Saved to disk without the dismissed or enrolled clusters' crops.
    two_people.engine.save_unknowns()
    assert not list(two_people.engine.unknowns_dir.glob("cluster_*.jpg"))


def test_corrections_wrong_match_and_this_is(two_people, knn_dir: Path):
    client, rec, enrol = two_people.client, two_people.h("recognize"), two_people.h("enrol")
    obama2 = _file(knn_dir / "train" / "obama" / "obama2.jpg")
    named = client.post("/api/v1/identify", headers=rec, files={"image": obama2}).json()
    assert [f["name"] for f in named["faces"]] == ["obama"]
    # "This match is wrong" (a recognize key may say it): that face is no longer named obama.
    wrong = client.post("/api/v1/corrections", headers=rec, json={"result_id": named["result_id"], "face": 0})
    assert wrong.status_code == 200 and wrong.json()["rejected"] == "obama", wrong.text
    after = client.post("/api/v1/identify", headers=rec, files={"image": obama2}).json()["faces"][0]
    assert after["name"] != "obama" and "obama" in after["rejected"]
    # Nothing to reject on a face that was not named.
    stranger = client.post(
        "/api/v1/identify",
        headers=rec,
        files={"image": _file(knn_dir / "train" / "kit_harington" / "john1.jpeg")},
    ).json()
    assert stranger["faces"][0]["name"] == "unknown"
    nothing = client.post(
        "/api/v1/corrections", headers=rec, json={"result_id": stranger["result_id"], "face": 0}
    )
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "not_named"
    # "This is Kit" needs the enrol role; it creates Kit and confirms the face as theirs.
    this_is = {"result_id": stranger["result_id"], "face": 0, "name": "Kit"}
    assert client.post("/api/v1/corrections", headers=rec, json=this_is).status_code == 403
    done = client.post("/api/v1/corrections", headers=enrol, json=this_is).json()
    assert done["confirmed"] == "Kit" and done["template_id"] is not None, done
    again = client.post(
        "/api/v1/identify",
        headers=rec,
        files={"image": _file(knn_dir / "train" / "kit_harington" / "john2.jpeg")},
    ).json()["faces"]
    assert [f["name"] for f in again] == ["Kit"]
    shown = client.get(f"/api/v1/people/{done['person_id']}", headers=enrol).json()
    assert shown["image_list"][0]["thumbnail_url"]  # the face's crop became Kit's photo
    log = client.get("/api/v1/corrections", headers=two_people.h("admin")).json()
    assert sorted(c["kind"] for c in log) == ["confirm", "reject"]
    missing = client.post("/api/v1/corrections", headers=rec, json={"result_id": "nope", "face": 0})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "result_not_found"


def test_health_ready_metrics(two_people, knn_dir: Path):
    client = two_people.client
    assert client.get("/api/v1/health").json() == {"status": "ok"}
    client.post(
        "/api/v1/detect",
        headers=two_people.h("recognize"),
        files={"image": _file(knn_dir / "train" / "biden" / "biden.jpg")},
    )
    for _ in range(100):  # warm-up runs in a thread at start
        ready = client.get("/api/v1/ready", headers=two_people.h("recognize"))
        if ready.status_code == 200:
            break
        time.sleep(0.1)
    assert ready.json()["people"] == 2
    text = client.get("/api/v1/metrics", headers=two_people.h("recognize")).text
    assert 'faceprint_http_requests_total{method="POST",route="/api/v1/detect",status="200"} 1.0' in text
    assert "faceprint_http_request_seconds_bucket" in text
    assert "faceprint_gallery_templates 2.0" in text
    processed = float(text.split("\nfaceprint_faces_processed_total ")[1].split()[0])
    assert processed >= 3  # two enrolments and one detection


def test_camera_frames_keep_no_crop_and_can_skip_the_review(two_people, knn_dir: Path):
    client, h = two_people.client, two_people.h("recognize")
    stranger = _file(knn_dir / "train" / "kit_harington" / "john1.jpeg")
    frame = client.post(
        "/api/v1/identify?mode=video&unknowns=false&top_k=1", headers=h, files={"image": stranger}
    ).json()
    assert [f["name"] for f in frame["faces"]] == ["unknown"]
    assert len(frame["faces"][0]["candidates"]) == 1
    assert two_people.engine.recent_face(frame["result_id"], 0).crop_jpeg is None
    assert client.get("/api/v1/unknowns", headers=two_people.h("enrol")).json() == []
    photo = client.post("/api/v1/identify", headers=h, files={"image": stranger}).json()
    assert two_people.engine.recent_face(photo["result_id"], 0).crop_jpeg[:2] == b"\xff\xd8"
    assert len(client.get("/api/v1/unknowns", headers=two_people.h("enrol")).json()) == 1
