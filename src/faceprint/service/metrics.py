"""Prometheus metrics of one service process (its own registry, so two apps in one process, as in tests,
do not collide): requests by route and status, latency histogram, faces processed, gallery size."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from faceprint.service.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _GalleryCollector:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self):
        people, templates = self.engine.sizes()
        yield GaugeMetricFamily("faceprint_gallery_people", "People in the gallery", value=people)
        yield GaugeMetricFamily(
            "faceprint_gallery_templates", "Face templates in the gallery", value=templates
        )
        unknown = len(self.engine.clusters.clusters) if self.engine.ready else 0
        yield GaugeMetricFamily(
            "faceprint_unknown_clusters", "Clusters of unknown faces awaiting review", value=unknown
        )

    def describe(self):
        return []


class Metrics:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "faceprint_http_requests", "HTTP requests", ("method", "route", "status"), registry=self.registry
        )
        self.latency = Histogram(
            "faceprint_http_request_seconds",
            "Request latency",
            ("route",),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.faces = Counter(
            "faceprint_faces_processed", "Faces detected or enrolled", registry=self.registry
        )
        self._faces_seen = 0
        self.registry.register(_GalleryCollector(engine))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        processed = self.engine.faces_processed
        if processed > self._faces_seen:
            self.faces.inc(processed - self._faces_seen)
            self._faces_seen = processed
        return generate_latest(self.registry)
