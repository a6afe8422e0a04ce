"""Errors as JSON: ``{"error": {"code": "...", "message": "..."}}`` with a stable code, never a traceback,
a file path or an SQL fragment. Library errors (``FaceprintError``) map to 4xx by class; anything else is a
500 whose message says only that, the details going to the server log."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceprint.errors import (
    FaceprintError,
    GalleryError,
    ImageError,
    InvalidNameError,
    ManyFacesError,
    ModelError,
    NoFaceError,
)

log = logging.getLogger("faceprint.service")


class ApiError(Exception):
    """An error the API answers with: HTTP status, stable code, human message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


# Library error class -> (status, code); the first match in order wins (subclasses first).
_LIBRARY = (
    (ImageError, 400, "bad_image"),
    (NoFaceError, 422, "no_face"),
    (ManyFacesError, 422, "many_faces"),
    (InvalidNameError, 422, "invalid_name"),
    (GalleryError, 409, "gallery_conflict"),
    (ModelError, 503, "model_unavailable"),
)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}

# Absolute paths (POSIX or Windows) and SQLite/psycopg phrasing that must not reach a client.
_PATH = re.compile(r"(?:[A-Za-z]:\\|/)[^\s:'\"]+(?:/[^\s:'\"]*)*")
_SQL = re.compile(r"\b(?:SELECT|INSERT|UPDATE|DELETE|sqlite3?|psycopg|SQL)\b.*", re.IGNORECASE)


def public_message(message: str, locations: tuple[str, ...] = ()) -> str:
    """A library message with the gallery's location, file paths and SQL removed."""
    for location in locations:
        if location:
            message = message.replace(location, "gallery")
    message = _PATH.sub("<file>", message)
    message = _SQL.sub("(database error)", message)
    return message.strip()


def from_library(err: FaceprintError, locations: tuple[str, ...] = ()) -> ApiError:
    for cls, status, code in _LIBRARY:
        if isinstance(err, cls):
            return ApiError(status, code, public_message(str(err), locations))
    return ApiError(400, "invalid_request", public_message(str(err), locations))


def body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def install(
    app: FastAPI, locations: tuple[str, ...], page: Callable[[Request, ApiError], Response] | None = None
) -> None:
    """Register the error handlers on ``app``: JSON for the API, ``page`` for the browser app's paths."""

    def answer(request: Request, err: ApiError) -> Response:
        if page is not None and not request.url.path.startswith(("/api/", "/static/", "/docs", "/openapi")):
            return page(request, err)
        return JSONResponse(body(err.code, err.message), status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> Response:
        return answer(request, err)

    @app.exception_handler(FaceprintError)
    async def _library_error(request: Request, err: FaceprintError) -> Response:
        return answer(request, from_library(err, locations))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(err.status_code, "error")
        detail = err.detail if isinstance(err.detail, str) else code.replace("_", " ")
        return answer(request, ApiError(err.status_code, code, detail, err.headers))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = []
        for item in err.errors()[:5]:
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        return JSONResponse(
            body("invalid_request", "; ".join(problems) or "invalid request"), status_code=422
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(body("internal_error", "internal server error (logged on the server)"), 500)
