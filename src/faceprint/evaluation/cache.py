"""Embedding cache: detections keyed by (detector config, image content hash), embeddings by (pipeline
config, image content hash), in one SQLite file of raw float32 blobs (no pickle).

Detections are stored apart from embeddings so that configurations differing only after detection
(alignment on/off, test-time views, another embedder) share the detector's work, which dominates on CPU.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceprint.evaluation import EvaluationError
from faceprint.types import Detection


@dataclass(frozen=True)
class Detections:
    """What the detector found in one image, and the image's (height, width)."""

    shape: tuple[int, int]
    faces: list[Detection]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS detections (
    detector TEXT NOT NULL, image TEXT NOT NULL, dets BLOB NOT NULL, PRIMARY KEY (detector, image));
CREATE TABLE IF NOT EXISTS embeddings (
    config TEXT NOT NULL, image TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (config, image));
"""
_DET_WIDTH = 15  # box (4), score (1), landmarks (10); the blob starts with the image's height and width
_CHUNK = 500  # SQLite's bound-parameter limit is 999 on old builds


def file_hash(path: Path) -> str:
    """Content hash of an image file (renaming or copying it keeps its cache entries)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:32]
    except OSError as e:
        raise EvaluationError(f"{path}: cannot read image ({e.strerror or e})") from e


def array_hash(image: np.ndarray) -> str:
    """Content hash of a decoded image (for synthetic variants that exist only in memory)."""
    h = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()[:32]


def default_path() -> Path:
    from faceprint.models import cache_dir

    return cache_dir() / "evaluation" / "embeddings.sqlite"


class EmbeddingCache:
    """Thread-safe store; ``path=None`` uses ``faceprint.models.cache_dir()/evaluation``."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise EvaluationError(
                f"{self.path}: embedding cache is damaged ({e}); delete it to rebuild"
            ) from e
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _get(self, table: str, key_col: str, value_col: str, key: str, images: Iterable[str]):
        images = list(dict.fromkeys(images))
        found: dict[str, bytes] = {}
        with self._lock:
            for i in range(0, len(images), _CHUNK):
                chunk = images[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT image, {value_col} FROM {table} WHERE {key_col} = ? AND image IN ({marks})",
                    [key, *chunk],
                )
                found.update(rows)
        return found

    def _put(self, table: str, key: str, items: Iterable[tuple[str, bytes]]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)", [(key, img, blob) for img, blob in items]
            )

    def get_detections(self, detector: str, images: Iterable[str]) -> dict[str, Detections]:
        rows = self._get("detections", "detector", "dets", detector, images)
        out = {}
        for image, blob in rows.items():
            arr = np.frombuffer(blob, dtype=np.float32)
            shape = (int(arr[0]), int(arr[1]))
            dets = [
                Detection(tuple(float(v) for v in r[:4]), float(r[4]), r[5:].reshape(5, 2).copy())
                for r in arr[2:].reshape(-1, _DET_WIDTH)
            ]
            out[image] = Detections(shape, dets)
        return out

    def put_detections(self, detector: str, items: Mapping[str, Detections]) -> None:
        def pack(found: Detections) -> bytes:
            rows = [np.r_[d.box, d.score, np.asarray(d.landmarks).ravel()] for d in found.faces]
            dets = np.asarray(rows, dtype=np.float32).reshape(-1, _DET_WIDTH)
            return np.r_[np.float32(found.shape), dets.ravel()].astype(np.float32).tobytes()

        self._put("detections", detector, ((img, pack(d)) for img, d in items.items()))

    def get_embeddings(self, config: str, images: Iterable[str]) -> dict[str, np.ndarray]:
        rows = self._get("embeddings", "config", "vector", config, images)
        return {img: np.frombuffer(blob, dtype=np.float32).copy() for img, blob in rows.items()}

    def put_embeddings(self, config: str, items: Mapping[str, np.ndarray]) -> None:
        self._put(
            "embeddings", config, ((img, np.asarray(v, np.float32).tobytes()) for img, v in items.items())
        )
