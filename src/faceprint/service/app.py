"""The FastAPI application factory: ``create_app(ServiceConfig(...))``.

One process holds one ``Engine`` (models, gallery, state), shared by every request. CPU work (detection,
embedding) runs on worker threads, at most ``config.workers`` at once, so the event loop keeps answering
(health checks, the event stream, static files) while faces are computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from faceprint.service import errors
from faceprint.service.auth import RateLimiter
from faceprint.service.config import ServiceConfig
from faceprint.service.engine import Engine
from faceprint.service.inputs import BodyLimit
from faceprint.service.metrics import Metrics

log = logging.getLogger("faceprint.service")
T = TypeVar("T")


class EventBus:
    """Server-Sent Events fan-out: every subscriber gets its own bounded queue; a slow one loses its
    oldest events rather than holding up the publishers (API requests, camera threads). The last
    ``keep`` events stay for ``recent`` and for a client reconnecting with ``Last-Event-ID``."""

    def __init__(self, keep: int = 200) -> None:
        self._subscribers: set[asyncio.Queue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, event: dict[str, Any]) -> None:
        """Thread-safe: callable from worker and camera threads."""
        with self._lock:
            event = {"id": next(self._ids), "at": round(time.time(), 3), **event}
            self._recent.append(event)
        if self._loop is None or not self._subscribers:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while shutting down
            self._loop.call_soon_threadsafe(self._deliver, event)

    def recent(self, after: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._recent if e["id"] > after]

    def _deliver(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    async def stream(self, last_id: int | None = None, heartbeat_s: float = 15.0) -> AsyncIterator[str]:
        queue: asyncio.Queue = asyncio.Queue(maxsize=256)
        self._subscribers.add(queue)
        try:
            yield ": connected\n\n"
            for event in self.recent(last_id) if last_id is not None else ():
                yield _sse(event)
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), heartbeat_s)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if last_id is None or event["id"] > last_id:
                    yield _sse(event)
        finally:
            self._subscribers.discard(queue)


def _sse(event: dict[str, Any]) -> str:
    return f"id: {event['id']}\nevent: {event.get('event', 'message')}\ndata: {json.dumps(event)}\n\n"


class Services:
    """What every request handler reaches through ``request.app.state.services``."""

    def __init__(self, config: ServiceConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.limiter = RateLimiter(config.rate_limit, config.rate_burst)
        # Sign-in attempts per client address, whatever --rate-limit says: a password guess costs an
        # scrypt (tens of ms of CPU), so guessing must neither go fast nor keep the CPU busy.
        self.login_limiter = RateLimiter(config.login_rate, config.login_burst)
        self.bus = EventBus()
        self.metrics = Metrics(engine)
        # Detection and embedding run on these threads only (not on anyio's pool of up to 40): the
        # large buffers of decoding and detection then come from ``workers`` threads' malloc arenas,
        # not from one arena per pool thread, which let resident memory creep up under load.
        self.cpu = ThreadPoolExecutor(max(1, config.workers), thread_name_prefix="faceprint-cpu")
        self.cameras: list[Camera] = []

    async def cpu_bound(self, fn: Callable[..., T], *args: Any) -> T:
        """Run detection/embedding work on a worker thread, at most ``workers`` at once (the rest wait
        in line, first come first served)."""
        return await asyncio.get_running_loop().run_in_executor(self.cpu, functools.partial(fn, *args))

    async def io_bound(self, fn: Callable[..., T], *args: Any) -> T:
        """Run gallery/state work (quick, but blocking) off the event loop."""
        return await anyio.to_thread.run_sync(fn, *args)


class Camera:
    """The `watch` pipeline on one source, in a thread: events go to the event stream, unknown tracks to
    the unknown-faces review."""

    def __init__(self, source: str, services: Services) -> None:
        self.source, self.services = source, services
        self.stop = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"camera {source}", daemon=True)

    def _run(self) -> None:
        from faceprint.video.pipeline import VideoRecognizer
        from faceprint.video.sources import open_source

        engine = self.services.engine
        try:
            video = open_source(int(self.source) if self.source.isdigit() else self.source, loop=False)
            runner = VideoRecognizer(engine.analyzer, engine.recognizer)

            def on_frame(frame: Any, labels: Any) -> None:
                if self.stop.is_set():
                    raise KeyboardInterrupt  # the pipeline's own clean stop: outputs flushed

            runner.run(video, on_frame=on_frame, on_event=self._event, clusters=engine.clusters)
        except Exception as err:  # a camera that fails must not take the service down
            self.error = errors.public_message(str(err), engine.locations)
            log.error("camera %s stopped: %s", self.source, err)
            self.services.bus.publish({"event": "camera_error", "source": self.source, "message": self.error})

    def _event(self, event: dict[str, Any]) -> None:
        self.services.bus.publish({**event, "source": self.source})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    services: Services = app.state.services
    services.bus.bind(asyncio.get_running_loop())
    warm_up = threading.Thread(target=services.engine.warm_up, name="warm-up", daemon=True)
    if services.config.warm_up:
        warm_up.start()
    for source in services.config.cameras:
        camera = Camera(source, services)
        services.cameras.append(camera)
        camera.thread.start()

    async def save_unknowns_now_and_then() -> None:
        while True:
            await asyncio.sleep(10)
            await services.io_bound(services.engine.save_unknowns)

    saver = asyncio.create_task(save_unknowns_now_and_then())
    try:
        yield
    finally:
        saver.cancel()
        for camera in services.cameras:
            camera.stop.set()
        for camera in services.cameras:
            await anyio.to_thread.run_sync(camera.thread.join, 10)
        services.cpu.shutdown(wait=True, cancel_futures=True)
        # A server stopped right after it started must not close the gallery under the warm-up's reads.
        if warm_up.is_alive():
            await anyio.to_thread.run_sync(warm_up.join, 120)
        services.engine.close()


def _offline_docs(app: FastAPI) -> None:
    """OpenAPI docs at /docs with Swagger UI's files served from here (FastAPI's default page loads them
    from a CDN, which an offline machine cannot reach). The files come from the swagger-ui-py package,
    located without importing it."""
    from fastapi.openapi.docs import get_swagger_ui_html

    spec = importlib.util.find_spec("swagger_ui")
    folder = Path(next(iter(spec.submodule_search_locations))) / "static" if spec else None
    urls: dict[str, str] = {}
    if folder is not None and (folder / "swagger-ui-bundle.js").is_file():
        app.mount("/docs/static", StaticFiles(directory=str(folder)), name="docs-static")
        urls = {
            "swagger_js_url": "/docs/static/swagger-ui-bundle.js",
            "swagger_css_url": "/docs/static/swagger-ui.css",
        }

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="faceprint API",
            swagger_favicon_url="",
            **urls,
        )


def create_app(config: ServiceConfig | None = None, engine: Engine | None = None) -> FastAPI:
    """The whole service: API v1, metrics, the browser app and its static files."""
    from faceprint.service import api, ui

    config = config or ServiceConfig()
    engine = engine or Engine(config)
    app = FastAPI(
        title="faceprint",
        version="1",
        description="Face detection, embeddings, verification and identification against a gallery of "
        "people. Every endpoint but `/api/v1/health` needs an API key (header `X-API-Key`), created with "
        "`faceprint keys create --role admin|enrol|recognize`.",
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
    )
    services = Services(config, engine)
    app.state.services = services
    errors.install(app, engine.locations, ui.error_page)
    ui.install_handlers(app)
    app.include_router(api.router)
    app.include_router(ui.router)
    static = resources.files("faceprint.service") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    _offline_docs(app)

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable) -> Response:
        start = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "other")
        services.metrics.observe(request.method, path, response.status_code, time.perf_counter() - start)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)
    return app
