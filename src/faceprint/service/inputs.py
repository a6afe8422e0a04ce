"""Reading a request: images as multipart uploads, base64 in JSON (for clients that cannot do multipart),
or a raw ``image/*`` body; other fields from the form, the JSON object or the query string. And the
byte limit on request bodies, enforced while the body streams in (a missing or lying Content-Length
cannot get around it)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceprint.service.errors import ApiError, body


@dataclass
class Fields:
    """The images and plain fields of one request."""

    images: dict[str, list[bytes]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def image(self, name: str) -> bytes:
        found = self.images.get(name)
        if not found:
            raise ApiError(422, "missing_image", f"an image is required in the field {name!r}")
        return found[0]

    def all_images(self, name: str) -> list[bytes]:
        found = self.images.get(name) or []
        if not found:
            raise ApiError(422, "missing_image", f"at least one image is required in the field {name!r}")
        return found

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str | int | float):
            raise ApiError(422, "invalid_request", f"{name}: expected a string")
        return str(value)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.values.get(name, default)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ApiError(422, "invalid_request", f"{name}: expected an integer") from None
        if not low <= number <= high:
            raise ApiError(422, "invalid_request", f"{name}: must be between {low} and {high}")
        return number


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(422, "invalid_request", f"{name}: expected a base64 string")
    if value.startswith("data:") and "," in value:  # a data URL from a browser
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_image", f"{name}: not valid base64") from None


async def read_fields(request: Request, image_fields: tuple[str, ...], max_files: int = 20) -> Fields:
    """Everything a request sent; ``image_fields`` name the fields that hold images."""
    fields = Fields(values=dict(request.query_params))
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data" or ctype == "application/x-www-form-urlencoded":
        async with request.form(max_files=max_files, max_fields=50) as form:  # closes its temp files
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    fields.images.setdefault(key, []).append(data)
                elif key in image_fields:
                    fields.images.setdefault(key, []).append(_b64(value, key))
                else:
                    fields.values[key] = value
    elif ctype == "application/json":
        try:
            doc = json.loads(await request.body())
        except ValueError:
            raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "invalid_json", "the request body must be a JSON object")
        for key, value in doc.items():
            if key in image_fields:
                items = value if isinstance(value, list) else [value]
                fields.images[key] = [_b64(v, key) for v in items[:max_files]]
            else:
                fields.values[key] = value
    elif ctype.startswith("image/") or ctype == "application/octet-stream":
        fields.images[image_fields[0]] = [await request.body()]
    elif request.method in ("POST", "PUT", "PATCH") and image_fields:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send images as multipart/form-data, as base64 in a JSON object, or as an image/* body",
        )
    return fields


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 (checked on the header and while
    the body arrives)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than the limit of {self.limit:,} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _send_json(send, 413, body("too_large", message))
                return
        seen = 0
        started = False

        class _TooLarge(ApiError):  # answered by the app's ApiError handler, or here if it escapes
            def __init__(self) -> None:
                super().__init__(413, "too_large", message)

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return msg

        async def tracked(msg: Message) -> None:
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited, tracked)
        except BaseException as err:
            # The app's layers may wrap it (anyio task groups raise an ExceptionGroup).
            if not _contains(err, _TooLarge) or started:
                raise
            await _send_json(send, 413, body("too_large", message))


def _contains(err: BaseException, kind: type) -> bool:
    if isinstance(err, kind):
        return True
    if isinstance(err, BaseExceptionGroup):
        return any(_contains(e, kind) for e in err.exceptions)
    return _contains(err.__cause__, kind) if err.__cause__ is not None else False


async def _send_json(send: Send, status: int, doc: dict) -> None:
    data = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
