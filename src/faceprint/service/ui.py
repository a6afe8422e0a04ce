"""The browser app: server-rendered pages (Jinja2, autoescaped), forms with CSRF tokens, and small
hand-written JavaScript where the browser must act (the live webcam page). No build step.

Login takes an API key (or the admin password set with `faceprint keys password`) and starts a session
(cookie: HttpOnly, SameSite=Strict). Pages call the engine directly; the live page's script calls the
JSON API with the session cookie and the CSRF token.
"""

from __future__ import annotations

import base64
import time
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

import cv2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from faceprint.service.auth import SESSION_COOKIE, Principal, authenticate, check_csrf
from faceprint.service.errors import ApiError
from faceprint.service.inputs import read_fields
from faceprint.service.state import PASSWORD_SESSION

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(resources.files("faceprint.service") / "templates"))


def ago(when: float | None) -> str:
    """'just now', '5 min ago', '3 h ago', '2 days ago': how long since a Unix time."""
    if not when:
        return "-"
    seconds = max(0.0, time.time() - float(when))
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''} ago"
    return "just now"


templates.env.filters["ago"] = ago
PREVIEW_SIDE = 1280  # the identify page shows the photo at most this large


class _LoginNeeded(Exception):
    pass


def _services(request: Request):
    return request.app.state.services


def _page(request: Request, name: str, principal: Principal | None, status: int = 200, **context: Any):
    return templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "csrf": principal.csrf if principal else "",
            "msg": request.query_params.get("msg"),
            "err": request.query_params.get("err"),
            **context,
        },
        status_code=status,
    )


def _back(path: str, msg: str | None = None, err: str | None = None) -> RedirectResponse:
    query = f"?msg={quote(msg)}" if msg else f"?err={quote(err)}" if err else ""
    return RedirectResponse(path + query, status_code=303)


def _who(request: Request, role: str = "recognize") -> Principal:
    principal = authenticate(request, _services(request).engine.state)
    if principal is None:
        raise _LoginNeeded
    if not principal.can(role):
        raise ApiError(
            403, "forbidden", f"this page needs the {role!r} role; you are signed in as {principal.role!r}"
        )
    return principal


async def _form(request: Request, principal: Principal, images: tuple[str, ...] = ()):
    fields = await read_fields(request, images)
    check_csrf(principal, request, fields.text("csrf"))
    _services(request).limiter.check(principal.key_id)
    return fields


def user(role: str = "recognize"):
    """A dependency for pages: the signed-in user holding ``role``; otherwise a redirect to the sign-in
    page (or an error page), via the handlers ``install_handlers`` registers."""

    async def dependency(request: Request) -> Principal:
        return _who(request, role)

    return dependency


RecognizePage = Annotated[Principal, Depends(user("recognize"))]
EnrolPage = Annotated[Principal, Depends(user("enrol"))]
AdminPage = Annotated[Principal, Depends(user("admin"))]


def install_handlers(app: Any) -> None:
    @app.exception_handler(_LoginNeeded)
    async def _login(request: Request, err: _LoginNeeded) -> Response:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def error_page(request: Request, err: ApiError) -> Response:
    """An error on a browser page, as a page."""
    try:
        principal = authenticate(request, _services(request).engine.state)
    except ApiError:
        principal = None
    return _page(request, "error.html", principal, status=err.status, code=err.code, message=err.message)


# -- sign in / out ------------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _page(request, "login.html", None, next=request.query_params.get("next", "/"))


@router.post("/login")
async def login(request: Request) -> Response:
    services = _services(request)
    fields = await read_fields(request, ())
    services.login_limiter.check(request.client.host if request.client else "?")
    token, password = (fields.text("key") or "").strip(), fields.text("password") or ""
    target = fields.text("next") or "/"
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # no open redirect
    state = services.engine.state
    principal = None
    if token:
        key = await services.io_bound(state.check_key, token)
        principal = (key.id, key.role) if key else None
    elif password and await services.io_bound(state.check_admin_password, password):
        principal = (PASSWORD_SESSION, "admin")
    if principal is None:
        return _page(
            request, "login.html", None, status=401, next=target, error="That key or password is not valid."
        )
    session_token, _ = await services.io_bound(state.create_session, *principal)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request, principal: RecognizePage) -> Response:
    await _form(request, principal)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await _services(request).io_bound(_services(request).engine.state.end_session, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- people -------------------------------------------------------------------------------------------


@router.get("/")
async def home(request: Request, principal: RecognizePage) -> Response:
    if not principal.can("enrol"):
        return RedirectResponse("/live", status_code=303)
    services = _services(request)
    people = await services.io_bound(services.engine.people)
    thumbs = await services.io_bound(services.engine.state.first_thumbnails)
    unknowns = len(await services.io_bound(services.engine.unknown_list))
    return _page(request, "people.html", principal, people=people, thumbs=thumbs, unknowns=unknowns)


@router.post("/people")
async def create_person(request: Request, principal: EnrolPage) -> Response:
    services = _services(request)
    fields = await _form(request, principal, ("photos",))
    person = await services.io_bound(services.engine.create_person, fields.text("name") or "")
    notes = await _enrol_photos(services, person.name, fields.images.get("photos", []))
    return _back(f"/people/{person.id}", msg=f"Added {person.name}. {notes}".strip())


async def _enrol_photos(services: Any, name: str, photos: list[bytes]) -> str:
    done, problems = 0, []
    for i, data in enumerate(photos, 1):
        if not data:
            continue
        try:
            image = await services.cpu_bound(services.engine.decode, data, f"photo {i}")
            result = await services.cpu_bound(services.engine.enrol, name, image)
        except ApiError as err:
            problems.append(err.message)
            continue
        if result.status == "enrolled":
            done += 1
        else:
            problems.append(f"photo {i}: {result.status}, {result.reason}")
    text = f"{done} photo(s) enrolled." if done else ""
    return " ".join([text, *problems]).strip()


@router.get("/people/{person_id}")
async def person_page(request: Request, person_id: int, principal: EnrolPage) -> Response:
    services = _services(request)
    person = await services.io_bound(services.engine.person, person_id)
    images = await services.io_bound(services.engine.images, person_id)
    others = [p for p in await services.io_bound(services.engine.people) if p.id != person_id]
    return _page(request, "person.html", principal, person=person, images=images, others=others)


@router.post("/people/{person_id}/rename")
async def rename(request: Request, person_id: int, principal: EnrolPage) -> Response:
    services = _services(request)
    fields = await _form(request, principal)
    person = await services.io_bound(services.engine.rename, person_id, fields.text("name") or "")
    return _back(f"/people/{person_id}", msg=f"Renamed to {person.name}.")


@router.post("/people/{person_id}/photos")
async def add_photos(request: Request, person_id: int, principal: EnrolPage) -> Response:
    services = _services(request)
    fields = await _form(request, principal, ("photos",))
    person = await services.io_bound(services.engine.person, person_id)
    notes = await _enrol_photos(services, person.name, fields.images.get("photos", []))
    return _back(f"/people/{person_id}", msg=notes or "No photo given.")


@router.post("/people/{person_id}/photos/{image_id}/remove")
async def remove_photo(request: Request, person_id: int, image_id: int, principal: EnrolPage) -> Response:
    services = _services(request)
    await _form(request, principal)
    await services.io_bound(services.engine.remove_image, person_id, image_id)
    return _back(f"/people/{person_id}", msg="Photo removed.")


@router.post("/people/{person_id}/merge")
async def merge(request: Request, person_id: int, principal: AdminPage) -> Response:
    services = _services(request)
    fields = await _form(request, principal)
    into = fields.integer("into", -1, 0, 2**62)
    person = await services.io_bound(services.engine.merge, person_id, into)
    return _back(f"/people/{person.id}", msg=f"Merged into {person.name}.")


@router.post("/people/{person_id}/delete")
async def delete(request: Request, person_id: int, principal: AdminPage) -> Response:
    services = _services(request)
    await _form(request, principal)
    person = await services.io_bound(services.engine.person, person_id)
    done = await services.io_bound(services.engine.delete, person_id)
    return _back(
        "/", msg=f"Deleted {person.name}: {done['templates']} template(s), {done['thumbnails']} photo(s)."
    )


@router.get("/people/{person_id}/photos/{image_id}.jpg")
async def photo(request: Request, person_id: int, image_id: int, principal: EnrolPage) -> Response:
    found = await _services(request).io_bound(_services(request).engine.state.thumbnail, image_id)
    if found is None or found[0] != person_id:
        raise ApiError(404, "thumbnail_not_found", "no such photo")
    return Response(found[1], media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


# -- identify -----------------------------------------------------------------------------------------


@router.get("/identify")
async def identify_page(request: Request, principal: RecognizePage) -> Response:
    return _page(request, "identify.html", principal, result=None)


@router.post("/identify")
async def identify(request: Request, principal: RecognizePage) -> Response:
    services = _services(request)
    fields = await _form(request, principal, ("photo",))
    image = await services.cpu_bound(services.engine.decode, fields.image("photo"), "photo")
    result_id, matches = await services.cpu_bound(
        services.engine.identify, image, services.config.top_k, True
    )
    scale = min(1.0, PREVIEW_SIDE / max(image.shape[:2]))
    shown = (
        image
        if scale == 1.0
        else cv2.resize(
            image,
            (round(image.shape[1] * scale), round(image.shape[0] * scale)),
            interpolation=cv2.INTER_AREA,
        )
    )
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(shown, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    faces = [
        {
            "index": i,
            "name": m.name,
            "known": m.known,
            "confidence": m.confidence,
            "distance": m.distance,
            "box": [v * scale for v in m.face.box],
            "candidates": m.candidates,
            "rejected": m.rejected,
        }
        for i, m in enumerate(matches)
    ]
    preview = "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode() if ok else ""
    return _page(
        request,
        "identify.html",
        principal,
        result={
            "id": result_id,
            "faces": faces,
            "preview": preview,
            "width": shown.shape[1],
            "height": shown.shape[0],
        },
    )


@router.post("/corrections")
async def correct(request: Request, principal: RecognizePage) -> Response:
    services = _services(request)
    fields = await _form(request, principal)
    name = (fields.text("name") or "").strip() or None
    if name is not None and not principal.can("enrol"):
        raise ApiError(403, "forbidden", "saying who a face is enrols it: this needs the 'enrol' role")
    result_id, face = fields.text("result_id") or "", fields.integer("face", 0, 0, 10_000)
    done = await services.io_bound(services.engine.correct, result_id, face, name)
    services.bus.publish({"event": "corrected", "result_id": result_id, "face": face, **done})
    if name is None:
        note = f"Noted: this face, and faces like it, will no longer be named {done['rejected']}."
    elif done["template_id"] is not None:
        note = f"Noted: this face is {done['confirmed']}, added to their photos."
    else:
        note = f"Noted: this face is {done['confirmed']} ({done['reason']}; not added as a photo)."
    return _back("/identify", msg=note)


# -- live camera, unknown faces -----------------------------------------------------------------------


@router.get("/live")
async def live(request: Request, principal: RecognizePage) -> Response:
    return _page(request, "live.html", principal)


@router.get("/unknowns")
async def unknowns_page(request: Request, principal: EnrolPage) -> Response:
    services = _services(request)
    clusters = await services.io_bound(services.engine.unknown_list)
    people = await services.io_bound(services.engine.people)
    return _page(request, "unknowns.html", principal, clusters=clusters, people=people)


@router.get("/unknowns/{cluster_id}.jpg")
async def unknown_crop(request: Request, cluster_id: int, principal: EnrolPage) -> Response:
    data = await _services(request).io_bound(_services(request).engine.unknown_crop, cluster_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post("/unknowns/{cluster_id}/assign")
async def assign(request: Request, cluster_id: int, principal: EnrolPage) -> Response:
    services = _services(request)
    fields = await _form(request, principal)
    done = await services.io_bound(services.engine.assign_unknown, cluster_id, fields.text("name"), None)
    return _back("/unknowns", msg=f"Enrolled as {done['name']} ({done['templates_added']} face(s)).")


@router.post("/unknowns/{cluster_id}/dismiss")
async def dismiss(request: Request, cluster_id: int, principal: EnrolPage) -> Response:
    services = _services(request)
    await _form(request, principal)
    await services.io_bound(services.engine.dismiss_unknown, cluster_id)
    return _back("/unknowns", msg="Dismissed.")


@router.get("/favicon.ico")
async def favicon() -> Response:
    return Response(status_code=204)


__all__ = ["router"]
