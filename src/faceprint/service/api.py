"""REST API v1 (``/api/v1``): JSON out; images in as multipart uploads, base64 in JSON, or an image body.

Roles: ``recognize`` detects, embeds, verifies, identifies and says "this match is wrong"; ``enrol`` also
manages people, their images and thumbnails, unknown faces and "this is X" corrections; ``admin`` also
merges and deletes people and reads the corrections log.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from faceprint.service.auth import Principal, require
from faceprint.service.engine import person_name
from faceprint.service.errors import ApiError
from faceprint.service.inputs import read_fields
from faceprint.service.metrics import CONTENT_TYPE

router = APIRouter(prefix="/api/v1")

Recognize = Annotated[Principal, Depends(require("recognize"))]
Enrol = Annotated[Principal, Depends(require("enrol"))]
Admin = Annotated[Principal, Depends(require("admin"))]
MAX_TOP_K = 20


def _upload_doc(*names: str, many: bool = False, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI text for endpoints that read their body themselves (multipart, base64 JSON or raw)."""
    binary = {"type": "string", "format": "binary"}
    props: dict[str, Any] = {n: ({"type": "array", "items": binary} if many else binary) for n in names}
    json_props: dict[str, Any] = {
        n: {"type": "string", "description": "base64 (or a data: URL)"} for n in names
    }
    for key, schema in (extra or {}).items():
        props[key] = json_props[key] = schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": props, "required": list(names)}
                },
                "application/json": {"schema": {"type": "object", "properties": json_props}},
                "image/jpeg": {"schema": binary},
            },
        }
    }


def _services(request: Request):
    return request.app.state.services


def _box(box: tuple[float, ...]) -> list[float]:
    return [round(float(v), 1) for v in box]


def _num(value: float, digits: int = 4) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None


def _person(p: Any, thumbs: dict[int, int]) -> dict[str, Any]:
    thumb = thumbs.get(p.id)
    return {
        "id": p.id,
        "name": p.name,
        "images": p.n_templates,
        "created": p.created,
        "thumbnail_url": f"/api/v1/people/{p.id}/images/{thumb}/thumbnail.jpg" if thumb else None,
    }


# -- health, readiness, metrics, events ------------------------------------------------------------


@router.get("/health", tags=["service"])
async def health() -> dict[str, str]:
    """Liveness: the process answers (no key needed)."""
    return {"status": "ok"}


@router.get("/ready", tags=["service"])
async def ready(request: Request, _: Recognize) -> Response:
    """Readiness: models loaded, gallery reachable."""
    services = _services(request)
    if not services.engine.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    people, templates = await services.io_bound(services.engine.sizes)
    cameras = [
        {"source": c.source, "error": c.error, "running": c.thread.is_alive()} for c in services.cameras
    ]
    return JSONResponse({"status": "ready", "people": people, "templates": templates, "cameras": cameras})


@router.get("/metrics", tags=["service"])
async def metrics(request: Request, _: Recognize) -> Response:
    """Prometheus metrics (text format)."""
    services = _services(request)
    return Response(await services.io_bound(services.metrics.render), media_type=CONTENT_TYPE)


@router.get("/events", tags=["service"])
async def events(request: Request, _: Recognize) -> StreamingResponse:
    """Server-Sent Events: recognitions by the API, the cameras' track events, corrections, camera
    errors. A client reconnecting with ``Last-Event-ID`` first gets what it missed (of the last 200)."""
    last = request.headers.get("last-event-id", "")
    return StreamingResponse(
        _services(request).bus.stream(int(last) if last.isdigit() else None),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/events/recent", tags=["service"])
async def recent_events(request: Request, _: Recognize, after: int = 0) -> list[dict[str, Any]]:
    """The last events (at most 200) with an id above ``after``, oldest first (for polling clients)."""
    return _services(request).bus.recent(after)


# -- faces ------------------------------------------------------------------------------------------


@router.post("/detect", tags=["faces"], openapi_extra=_upload_doc("image"))
async def detect(request: Request, _: Recognize) -> dict[str, Any]:
    """Every face: box (x1, y1, x2, y2), score, 5 landmarks (eyes, nose, mouth corners)."""
    services = _services(request)
    fields = await read_fields(request, ("image",))
    image = await services.cpu_bound(services.engine.decode, fields.image("image"))
    found = await services.cpu_bound(services.engine.detect, image)
    return {
        "width": image.shape[1],
        "height": image.shape[0],
        "faces": [
            {"box": _box(d.box), "score": _num(d.score), "landmarks": [_box(p) for p in d.landmarks]}
            for d in found
        ],
    }


@router.post("/embed", tags=["faces"], openapi_extra=_upload_doc("image"))
async def embed(request: Request, _: Recognize) -> dict[str, Any]:
    """Every face with its L2-normalised embedding."""
    services = _services(request)
    fields = await read_fields(request, ("image",))
    image = await services.cpu_bound(services.engine.decode, fields.image("image"))
    faces = await services.cpu_bound(services.engine.analyze, image)
    embedder = services.engine.analyzer.embedder
    return {
        "embedder": {"name": embedder.name, "version": embedder.version},
        "faces": [
            {"box": _box(f.box), "score": _num(f.score), "embedding": [float(v) for v in f.embedding]}
            for f in faces
        ],
    }


@router.post("/verify", tags=["faces"], openapi_extra=_upload_doc("image_a", "image_b"))
async def verify(request: Request, _: Recognize) -> dict[str, Any]:
    """Are the people of two portraits the same? Distance, decision at the calibrated threshold,
    confidence."""
    services = _services(request)
    fields = await read_fields(request, ("image_a", "image_b"))
    a = await services.cpu_bound(services.engine.decode, fields.image("image_a"), "image_a")
    b = await services.cpu_bound(services.engine.decode, fields.image("image_b"), "image_b")
    result = await services.cpu_bound(services.engine.verify, a, b)
    return {
        "distance": _num(result.distance),
        "same": bool(result.same),
        "confidence": _num(result.confidence),
        "threshold": _num(result.threshold),
    }


def _identify_doc() -> dict[str, Any]:
    return _upload_doc(
        "image",
        extra={
            "top_k": {"type": "integer", "default": 3},
            "mode": {"type": "string", "enum": ["photo", "video"], "default": "photo"},
            "unknowns": {"type": "boolean", "default": True},
        },
    )


@router.post("/identify", tags=["faces"], openapi_extra=_identify_doc())
@router.post("/recognize", tags=["faces"], openapi_extra=_identify_doc())
async def identify(request: Request, principal: Recognize) -> dict[str, Any]:
    """Every face in the image: a gallery name or "unknown", top-k candidates, box. Unknown faces go to
    the unknown-faces review (``unknowns=false``: not); ``result_id`` + face index let a client correct a
    match later. ``mode=video`` for camera frames: faces under 40 pixels are not looked for (faster)."""
    services = _services(request)
    fields = await read_fields(request, ("image",))
    top_k = fields.integer("top_k", services.config.top_k, 1, MAX_TOP_K)
    remember = fields.text("unknowns", "true") not in ("false", "0", "no")
    video = fields.text("mode", "photo") == "video"
    image = await services.cpu_bound(services.engine.decode, fields.image("image"))
    result_id, matches = await services.cpu_bound(services.engine.identify, image, top_k, remember, video)
    faces = [
        {
            "index": i,
            "box": _box(m.face.box),
            "score": _num(m.face.score),
            "name": m.name,
            "person_id": m.person_id,
            "known": m.known,
            "distance": _num(m.distance),
            "confidence": _num(m.confidence),
            "threshold": _num(m.threshold),
            "margin": _num(m.margin),
            "gallery_size": m.gallery_size,
            "rejected": list(m.rejected),
            "candidates": [
                {"person_id": c.person_id, "name": c.name, "distance": _num(c.distance)} for c in m.candidates
            ],
        }
        for i, m in enumerate(matches)
    ]
    if faces:
        services.bus.publish(
            {
                "event": "recognized",
                "source": "api",
                "result_id": result_id,
                "faces": [{"name": f["name"], "person_id": f["person_id"], "box": f["box"]} for f in faces],
            }
        )
    return {"result_id": result_id, "width": image.shape[1], "height": image.shape[0], "faces": faces}


# -- corrections ------------------------------------------------------------------------------------


@router.post("/corrections", tags=["corrections"])
async def correct(request: Request, principal: Recognize) -> dict[str, Any]:
    """ "This match is wrong" on a face of a recognition result (``result_id``, ``face``): that face and
    faces like it are no longer given that name. With ``name``, "this is NAME" (needs the enrol role):
    the face is confirmed as that person's (added as a template if it passes the enrolment quality
    gate; the person is created if new) and the name it was given instead, if any, rejected."""
    services = _services(request)
    fields = await read_fields(request, ())
    result_id = fields.text("result_id") or ""
    face = fields.integer("face", 0, 0, 10_000)
    name = fields.text("name")
    if name is not None and not principal.can("enrol"):
        raise ApiError(403, "forbidden", "saying who a face is enrols it: this needs the 'enrol' role")
    done = await services.io_bound(services.engine.correct, result_id, face, name)
    services.bus.publish({"event": "corrected", "result_id": result_id, "face": face, **done})
    return done


@router.get("/corrections", tags=["corrections"])
async def corrections(request: Request, _: Admin) -> list[dict[str, Any]]:
    """The latest corrections (newest first)."""
    services = _services(request)
    return await services.io_bound(services.engine.corrections)


# -- people -----------------------------------------------------------------------------------------


@router.get("/people", tags=["people"])
async def people(request: Request, _: Enrol) -> list[dict[str, Any]]:
    """Everybody in the gallery, with a thumbnail URL."""
    engine = _services(request).engine
    everyone = await _services(request).io_bound(engine.people)
    thumbs = await _services(request).io_bound(engine.state.first_thumbnails)
    return [_person(p, thumbs) for p in everyone]


@router.post("/people", tags=["people"], status_code=201)
async def create_person(request: Request, _: Enrol) -> dict[str, Any]:
    """A new person (``name``); images given in ``image`` are enrolled too."""
    services = _services(request)
    fields = await read_fields(request, ("image",))
    name = fields.text("name")
    if not name:
        raise ApiError(422, "invalid_request", "name: required")
    person = await services.io_bound(services.engine.create_person, name)
    results = []
    for data in fields.images.get("image", []):
        results.append(await _enrol_one(services, person.name, data))
    thumbs = await services.io_bound(services.engine.state.first_thumbnails)
    person = await services.io_bound(services.engine.person, person.id)
    return {**_person(person, thumbs), "enrolments": results}


async def _enrol_one(services: Any, name: str, data: bytes) -> dict[str, Any]:
    image = await services.cpu_bound(services.engine.decode, data)
    result = await services.cpu_bound(services.engine.enrol, name, image)
    return {
        "status": result.status,
        "reason": result.reason,
        "image_id": result.template_id,
        "flags": list(result.flags),
    }


@router.post(
    "/enroll", tags=["people"], openapi_extra=_upload_doc("image", extra={"name": {"type": "string"}})
)
async def enroll(request: Request, _: Enrol) -> dict[str, Any]:
    """Enrol the portrait's subject as ``name`` (the person is created on first use)."""
    services = _services(request)
    fields = await read_fields(request, ("image",))
    name = fields.text("name")
    if not name:
        raise ApiError(422, "invalid_request", "name: required")
    name = person_name(name)
    outcome = await _enrol_one(services, name, fields.image("image"))
    person = await services.io_bound(services.engine.gallery.find, name)
    return {**outcome, "person_id": None if person is None else person.id}


@router.get("/people/{person_id}", tags=["people"])
async def show_person(person_id: int, request: Request, _: Enrol) -> dict[str, Any]:
    services = _services(request)
    person = await services.io_bound(services.engine.person, person_id)
    thumbs = await services.io_bound(services.engine.state.first_thumbnails)
    images = await services.io_bound(services.engine.images, person_id)
    for img in images:
        img["thumbnail_url"] = (
            f"/api/v1/people/{person_id}/images/{img['id']}/thumbnail.jpg" if img.pop("thumbnail") else None
        )
    return {**_person(person, thumbs), "metadata": person.metadata, "image_list": images}


@router.patch("/people/{person_id}", tags=["people"])
async def rename_person(person_id: int, request: Request, _: Enrol) -> dict[str, Any]:
    """Rename (``name``)."""
    services = _services(request)
    fields = await read_fields(request, ())
    name = fields.text("name")
    if not name:
        raise ApiError(422, "invalid_request", "name: required")
    person = await services.io_bound(services.engine.rename, person_id, name)
    thumbs = await services.io_bound(services.engine.state.first_thumbnails)
    return _person(person, thumbs)


@router.post("/people/{person_id}/merge", tags=["people"])
async def merge_person(person_id: int, request: Request, _: Admin) -> dict[str, Any]:
    """Move every image of this person to ``into`` (a person id) and delete this one."""
    services = _services(request)
    fields = await read_fields(request, ())
    into = fields.integer("into", -1, 0, 2**62)
    person = await services.io_bound(services.engine.merge, person_id, into)
    thumbs = await services.io_bound(services.engine.state.first_thumbnails)
    return _person(person, thumbs)


@router.delete("/people/{person_id}", tags=["people"])
async def delete_person(person_id: int, request: Request, _: Admin) -> dict[str, Any]:
    """Delete the person, every template and every stored thumbnail."""
    services = _services(request)
    deleted = await services.io_bound(services.engine.delete, person_id)
    return {"deleted": person_id, **deleted}


@router.post("/people/{person_id}/images", tags=["people"], openapi_extra=_upload_doc("image", many=True))
async def add_images(person_id: int, request: Request, _: Enrol) -> dict[str, Any]:
    """Enrol more photos of this person (each photo's main face)."""
    services = _services(request)
    person = await services.io_bound(services.engine.person, person_id)
    fields = await read_fields(request, ("image",))
    results = [await _enrol_one(services, person.name, data) for data in fields.all_images("image")]
    return {"person_id": person_id, "enrolments": results}


@router.delete("/people/{person_id}/images/{image_id}", tags=["people"])
async def remove_image(person_id: int, image_id: int, request: Request, _: Enrol) -> dict[str, Any]:
    """Remove one image (its template and thumbnail)."""
    services = _services(request)
    await services.io_bound(services.engine.remove_image, person_id, image_id)
    return {"deleted": image_id}


@router.get("/people/{person_id}/images/{image_id}/thumbnail.jpg", tags=["people"])
async def image_thumbnail(person_id: int, image_id: int, request: Request, _: Enrol) -> Response:
    services = _services(request)
    found = await services.io_bound(services.engine.state.thumbnail, image_id)
    if found is None or found[0] != person_id:
        raise ApiError(404, "thumbnail_not_found", "no such thumbnail")
    return Response(found[1], media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


# -- unknown faces ----------------------------------------------------------------------------------


@router.get("/unknowns", tags=["unknown faces"])
async def unknowns(request: Request, _: Enrol) -> list[dict[str, Any]]:
    """Clusters of faces seen (by the API and the cameras) that matched nobody, newest first."""
    services = _services(request)
    found = await services.io_bound(services.engine.unknown_list)
    for c in found:
        c["crop_url"] = f"/api/v1/unknowns/{c['id']}/crop.jpg" if c.pop("has_crop") else None
    return found


@router.get("/unknowns/{cluster_id}/crop.jpg", tags=["unknown faces"])
async def unknown_crop(cluster_id: int, request: Request, _: Enrol) -> Response:
    services = _services(request)
    data = await services.io_bound(services.engine.unknown_crop, cluster_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post("/unknowns/{cluster_id}/assign", tags=["unknown faces"])
async def assign_unknown(cluster_id: int, request: Request, _: Enrol) -> dict[str, Any]:
    """Enrol the cluster's faces as ``name`` (new or existing person) or ``person_id``."""
    services = _services(request)
    fields = await read_fields(request, ())
    person_id = fields.values.get("person_id")
    pid = None if person_id in (None, "") else fields.integer("person_id", 0, 0, 2**62)
    return await services.io_bound(services.engine.assign_unknown, cluster_id, fields.text("name"), pid)


@router.post("/unknowns/{cluster_id}/dismiss", tags=["unknown faces"])
async def dismiss_unknown(cluster_id: int, request: Request, _: Enrol) -> dict[str, Any]:
    """Forget the cluster (its faces and crop)."""
    services = _services(request)
    await services.io_bound(services.engine.dismiss_unknown, cluster_id)
    return {"dismissed": cluster_id}
