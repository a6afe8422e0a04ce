"""Keys and roles, upload limits, hostile images and names, CSRF on the browser app's forms, rate limits,
CORS, and errors that never show a traceback, a file path or SQL."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image


def _jpeg(path: Path) -> tuple[str, bytes, str]:
    return ("x.jpg", path.read_bytes(), "image/jpeg")


def _clean(text: str, service) -> None:
    """An error body: JSON with a code and a message, no traceback, path or SQL."""
    assert "Traceback" not in text and 'File "' not in text
    assert str(service.folder) not in text and ".sqlite3" not in text and "/tmp" not in text
    assert not re.search(r"\b(SELECT|INSERT|sqlite3|UNIQUE constraint)\b", text)


def test_every_endpoint_but_health_needs_a_valid_key(service):
    client = service.client
    assert client.get("/api/v1/health").status_code == 200
    routes = [
        ("GET", "/api/v1/ready"),
        ("GET", "/api/v1/metrics"),
        ("GET", "/api/v1/people"),
        ("GET", "/api/v1/people/1"),
        ("POST", "/api/v1/identify"),
        ("POST", "/api/v1/detect"),
        ("POST", "/api/v1/verify"),
        ("POST", "/api/v1/embed"),
        ("POST", "/api/v1/enroll"),
        ("DELETE", "/api/v1/people/1"),
        ("GET", "/api/v1/unknowns"),
        ("POST", "/api/v1/corrections"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/people/1/images/1/thumbnail.jpg"),
    ]
    for method, path in routes:
        for headers in (
            {},
            {"X-API-Key": "fp_nope_nope"},
            {"Authorization": "Bearer " + service.keys["admin"][:-2]},
        ):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.json()["error"]["code"] in ("unauthorized", "invalid_key")
    assert (
        client.get("/api/v1/people", headers={"Authorization": "Bearer " + service.keys["admin"]}).status_code
        == 200
    )


def test_roles(service, knn_dir: Path):
    client = service.client
    photo = knn_dir / "train" / "biden" / "biden.jpg"
    created = client.post(
        "/api/v1/enroll", headers=service.h("enrol"), data={"name": "b"}, files={"image": _jpeg(photo)}
    )
    person = created.json()["person_id"]
    image = created.json()["image_id"]
    rec = service.h("recognize")
    forbidden = [
        ("POST", "/api/v1/enroll", {"data": {"name": "x"}, "files": {"image": _jpeg(photo)}}),
        ("POST", "/api/v1/people", {"json": {"name": "x"}}),
        ("PATCH", f"/api/v1/people/{person}", {"json": {"name": "y"}}),
        ("DELETE", f"/api/v1/people/{person}", {}),
        ("GET", "/api/v1/people", {}),
        ("GET", f"/api/v1/people/{person}/images/{image}/thumbnail.jpg", {}),
        ("GET", "/api/v1/unknowns", {}),
    ]
    for method, path, kwargs in forbidden:
        r = client.request(method, path, headers=rec, **kwargs)
        assert r.status_code == 403, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "forbidden"
    for path in (f"/api/v1/people/{person}/merge", f"/api/v1/people/{person}"):
        method = "POST" if path.endswith("merge") else "DELETE"
        assert (
            client.request(method, path, headers=service.h("enrol"), json={"into": person}).status_code == 403
        )
    assert client.post("/api/v1/identify", headers=rec, files={"image": _jpeg(photo)}).status_code == 200
    assert client.delete(f"/api/v1/people/{person}", headers=service.h("admin")).status_code == 200


def test_revoked_key_stops_working_at_once(service):
    state = service.engine.state
    key, token = state.create_key("recognize", "temp")
    assert service.client.get("/api/v1/ready", headers={"X-API-Key": token}).status_code in (200, 503)
    state.revoke_key(key.id)
    assert service.client.get("/api/v1/ready", headers={"X-API-Key": token}).status_code == 401


def test_hostile_uploads_are_refused_with_a_clear_message(service, knn_dir: Path):
    client, h = service.client, service.h("recognize")
    photo = (knn_dir / "train" / "biden" / "biden.jpg").read_bytes()
    bomb = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(bomb, "PNG")  # 144 Mpx of zeros in a few hundred kB
    cases = {
        "truncated": (photo[: len(photo) // 3], "truncated"),
        "not an image": (b"%PDF-1.4 hello" * 100, "not an image"),
        "bomb": (bomb.getvalue(), "too large"),
        "empty": (b"", "empty"),
    }
    for name, (data, words) in cases.items():
        r = client.post("/api/v1/detect", headers=h, files={"image": ("a.jpg", data, "image/jpeg")})
        assert r.status_code == 400, (name, r.status_code, r.text)
        error = r.json()["error"]
        assert error["code"] == "bad_image" and words in error["message"], (name, error)
        _clean(r.text, service)
    bad64 = client.post("/api/v1/detect", headers=h, json={"image": "not base64!"})
    assert bad64.status_code == 400 and "base64" in bad64.json()["error"]["message"]


def test_upload_limits_give_413(tmp_path: Path, make_app, knn_dir: Path):
    from fastapi.testclient import TestClient

    app, _, keys = make_app(tmp_path, max_upload_bytes=50_000, max_megapixels=0.1, warm_up=False)
    photo = knn_dir / "train" / "obama" / "obama.jpg"
    big = photo.read_bytes()
    assert len(big) > 50_000
    with TestClient(app) as client:
        h = {"X-API-Key": keys["recognize"]}
        r = client.post("/api/v1/detect", headers=h, files={"image": ("a.jpg", big, "image/jpeg")})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

        def chunks():  # no Content-Length: the limit applies while the body streams in
            for i in range(0, len(big), 8192):
                yield big[i : i + 8192]

        r = client.post("/api/v1/detect", headers={**h, "Content-Type": "image/jpeg"}, content=chunks())
        assert r.status_code == 413
        small = io.BytesIO()
        Image.new("RGB", (400, 300)).save(small, "JPEG")  # 0.12 Mpx > 0.1
        r = client.post(
            "/api/v1/detect", headers=h, files={"image": ("a.jpg", small.getvalue(), "image/jpeg")}
        )
        assert r.status_code == 400 and "too large" in r.json()["error"]["message"]


def test_rate_limit_per_key(tmp_path: Path, make_app):
    from fastapi.testclient import TestClient

    app, _, keys = make_app(tmp_path, rate_limit=0.5, rate_burst=3, warm_up=False)
    with TestClient(app) as client:
        codes = [
            client.get("/api/v1/metrics", headers={"X-API-Key": keys["admin"]}).status_code for _ in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        limited = client.get("/api/v1/metrics", headers={"X-API-Key": keys["admin"]})
        assert int(limited.headers["Retry-After"]) >= 1
        # Another key has its own bucket.
        assert client.get("/api/v1/metrics", headers={"X-API-Key": keys["enrol"]}).status_code == 200


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        'O\'Brien "Bob"',
        "Robert'); DROP TABLE people;--",
        "<script>alert(1)</script>",
        "Zoë 李",
        "tab\tand\nnewline",
        "\x1b[31mred",
    ],
)
def test_hostile_names_are_stored_as_the_library_says_and_rendered_escaped(service, name: str):
    """The service applies the library's one name policy: a name it accepts is stored as it cleans it
    (and shown escaped in the UI); a name it refuses is a 422 with its reason, never a 500 or a file."""
    from faceprint.errors import FaceprintError
    from faceprint.names import person_name

    client = service.client
    created = client.post("/api/v1/people", headers=service.h("enrol"), json={"name": name})
    try:
        expected = person_name(name)
    except FaceprintError as err:
        assert created.status_code == 422, created.text
        assert created.json()["error"] == {"code": "invalid_name", "message": str(err)}
        assert service.engine.gallery.people() == []
        return
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert client.get(f"/api/v1/people/{pid}", headers=service.h("enrol")).json()["name"] == expected
    assert [p["name"] for p in client.get("/api/v1/people", headers=service.h("enrol")).json()] == [expected]
    client.post("/login", data={"key": service.keys["admin"]})
    for page in ("/", f"/people/{pid}"):
        html = client.get(page).text
        assert "<script>alert(1)" not in html
        if "<" in name:
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not list(service.folder.glob("**/passwd"))
    duplicate = client.post("/api/v1/people", headers=service.h("enrol"), json={"name": name})
    assert duplicate.status_code == 409
    _clean(duplicate.text, service)


def test_ui_login_session_and_csrf(service):
    client = service.client
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")
    bad = client.post("/login", data={"key": "fp_wrong_key"})
    assert bad.status_code == 401 and "not valid" in bad.text
    ok = client.post(
        "/login", data={"key": service.keys["admin"], "next": "https://evil.example/"}, follow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # no open redirect
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    # A form post without the token (what a cross-site page could make the browser send) is refused.
    refused = client.post("/people", data={"name": "Mallory"}, follow_redirects=False)
    assert refused.status_code == 403 and "CSRF" in refused.text
    wrong = client.post("/people", data={"name": "Mallory", "csrf": csrf[:-1] + "x"}, follow_redirects=False)
    assert wrong.status_code == 403
    assert service.engine.gallery.people() == []
    done = client.post("/people", data={"name": "Alice", "csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303 and [p.name for p in service.engine.gallery.people()] == ["Alice"]
    # The session also authenticates the API, which then wants the token in a header for changes.
    assert client.get("/api/v1/people").status_code == 200
    assert client.post("/api/v1/people", json={"name": "Eve"}).status_code == 403
    assert (
        client.post("/api/v1/people", json={"name": "Eve"}, headers={"X-CSRF-Token": csrf}).status_code == 201
    )
    # Sign out ends the session on the server.
    client.post("/logout", data={"csrf": csrf})
    assert client.get("/api/v1/people").status_code == 401


def test_admin_password_login(service):
    service.engine.state.set_admin_password("correct horse battery")
    client = service.client
    assert client.post("/login", data={"password": "wrong password!"}).status_code == 401
    ok = client.post("/login", data={"password": "correct horse battery"}, follow_redirects=False)
    assert ok.status_code == 303
    assert client.get("/api/v1/people").status_code == 200


def test_cors_off_unless_configured(service, tmp_path: Path, make_app):
    from fastapi.testclient import TestClient

    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    r = service.client.options("/api/v1/identify", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    app, _, _ = make_app(tmp_path / "cors", cors_origins=("https://app.example",), warm_up=False)
    with TestClient(app) as client:
        r = client.options("/api/v1/identify", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_errors_are_json_without_internals(service):
    client, h = service.client, service.h("admin")
    cases = [
        client.get("/api/v1/people/999", headers=h),
        client.get("/api/v1/people/abc", headers=h),
        client.post("/api/v1/people", headers=h, json={"name": "unknown"}),  # reserved by the library
        client.post("/api/v1/people", headers=h, json={"name": "   "}),
        client.post(
            "/api/v1/people",
            headers=h,
            content=b"{not json",
        ),
        client.post("/api/v1/identify", headers=h, json={"image": "", "top_k": 99}),
        client.get("/api/v1/no-such-thing", headers=h),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code)
        error = r.json()["error"]
        assert set(error) == {"code", "message"} and error["code"] and error["message"]
        _clean(r.text, service)


def test_library_errors_map_to_stable_codes():
    from faceprint.errors import GalleryError, ImageError, InvalidNameError, NoFaceError
    from faceprint.service.errors import from_library

    cases = {
        InvalidNameError("a person's name cannot be empty"): (422, "invalid_name"),
        GalleryError("/srv/faces/g.sqlite3: cannot merge 'a' into itself"): (409, "gallery_conflict"),
        ImageError("/tmp/x.jpg: truncated"): (400, "bad_image"),
        NoFaceError("no face found"): (422, "no_face"),
    }
    for err, (status, code) in cases.items():
        mapped = from_library(err, ("/srv/faces/g.sqlite3",))
        assert (mapped.status, mapped.code) == (status, code)
        assert "/srv" not in mapped.message and "/tmp" not in mapped.message


def test_sign_in_attempts_are_rate_limited_per_address(tmp_path: Path, make_app):
    """Password guesses are slow on purpose (scrypt): a burst, then about login_rate a second."""
    from fastapi.testclient import TestClient

    app, engine, keys = make_app(tmp_path, login_rate=0.01, login_burst=3, warm_up=False)
    engine.state.set_admin_password("correct horse battery")
    with TestClient(app) as client:
        codes = [client.post("/login", data={"password": f"guess {i}"}).status_code for i in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        # The API's keys are not held up by it.
        assert client.get("/api/v1/people", headers={"X-API-Key": keys["enrol"]}).status_code == 200
