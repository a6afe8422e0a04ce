"""Settings of one service process (what `faceprint serve` options fill in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServiceConfig:
    gallery: str | None = None  # a SQLite path or a store URL; None: the default gallery
    state: Path | None = None  # keys, sessions, thumbnails; None: beside the gallery (see state.py)
    max_upload_bytes: int = 10 * 1024 * 1024
    max_megapixels: float = 40.0
    rate_limit: float = 50.0  # requests per second per key, sustained (0: no limit)
    rate_burst: int = 100
    login_rate: float = 1.0  # sign-in attempts per second per client address, sustained
    login_burst: int = 10
    cors_origins: tuple[str, ...] = ()  # empty: CORS off
    workers: int = 2  # requests doing CPU work at once (detection, embedding); more wait in line
    top_k: int = 3
    cameras: tuple[str, ...] = ()  # sources for the built-in `watch` pipeline
    embedder: str | None = None  # None: the one recognizer.embedder_for picks for the gallery
    embedder_options: dict = field(default_factory=dict)  # e.g. {"flip": False}
    detector_options: dict = field(default_factory=dict)
    warm_up: bool = True  # load the models when the process starts (else on first use)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)
