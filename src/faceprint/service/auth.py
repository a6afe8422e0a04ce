"""Who is calling: an API key (``X-API-Key: fp_...`` or ``Authorization: Bearer fp_...``) or the browser
app's session cookie; what their role allows; how fast they may call.

A cookie-authenticated request that changes something must carry the session's CSRF token (header
``X-CSRF-Token``, or the form field ``csrf`` on the UI's own forms): a cross-site page can make the browser
send the cookie, but cannot read the token. The cookie is HttpOnly and SameSite=Strict as well.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from faceprint.service.errors import ApiError
from faceprint.service.state import ROLES, ServiceState, role_allows

SESSION_COOKIE = "faceprint_session"
# Declared for the OpenAPI docs (their "Authorize" button); ``authenticate`` reads the headers itself.
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="fp_... from `faceprint keys create`")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    via: str  # "key" or "session"
    csrf: str | None = None  # the session's token (sessions only)

    def can(self, role: str) -> bool:
        return role_allows(self.role, role)


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second sustained, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, since = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - since) * self.rate)
            if tokens < 1.0:
                wait = math.ceil((1.0 - tokens) / self.rate)
                self._buckets[key] = (tokens, now)
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests for this key; retry in {wait} s",
                    {"Retry-After": str(wait)},
                )
            self._buckets[key] = (tokens - 1.0, now)


def token_from_headers(request: Request) -> str | None:
    token = request.headers.get("x-api-key")
    if token:
        return token.strip()
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def authenticate(request: Request, state: ServiceState) -> Principal | None:
    """The caller by key header or session cookie; None if neither is valid."""
    token = token_from_headers(request)
    if token:
        key = state.check_key(token)
        if key is None:
            raise ApiError(401, "invalid_key", "the API key is not valid (unknown or revoked)")
        return Principal(key.id, key.role, "key")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = state.session(cookie)
        if session is not None:
            return Principal(session.key_id, session.role, "session", session.csrf)
    return None


def check_csrf(principal: Principal, request: Request, form_token: str | None = None) -> None:
    if principal.via != "session" or request.method in SAFE_METHODS:
        return
    sent = request.headers.get("x-csrf-token") or form_token or ""
    if not principal.csrf or not hmac.compare_digest(sent, principal.csrf):
        raise ApiError(403, "csrf_failed", "missing or wrong CSRF token (reload the page and try again)")


def require(role: str):
    """A FastAPI dependency: the caller, who must hold ``role`` (or a higher one)."""
    if role not in ROLES:
        raise ValueError(role)

    async def dependency(request: Request, _key: str | None = Security(_API_KEY)) -> Principal:
        services = request.app.state.services
        principal = authenticate(request, services.engine.state)
        if principal is None:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required (header X-API-Key)",
                {"WWW-Authenticate": "Bearer"},
            )
        check_csrf(principal, request)
        services.limiter.check(principal.key_id)
        if not principal.can(role):
            raise ApiError(403, "forbidden", f"this needs the {role!r} role; the key has {principal.role!r}")
        request.state.principal = principal
        return principal

    return dependency
