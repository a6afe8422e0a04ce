"""Embed a set of images through a pipeline configuration, batched, cached and with a progress bar.

Face policy (one face per image, as evaluation protocols assume):
- several faces: the subject by :mod:`faceprint.subject`'s "largest-central" strategy (the labelled
  subject of LFW-style photos is the central one, bystanders are often larger);
- no face: the image is still embedded, aligned with the median landmark positions (relative to image
  size) of the faces found in the same run — a centred-face assumption that holds for cropped data sets
  such as LFW — or, when no face was found at all, with the template placed over the central 60% of the
  image. Such images are counted (``found`` is False) and the report lists them.

A configuration composes the core stages through ``FaceAnalyzer`` (detect, align, embed_chips); the
variant evaluation needs — alignment off (the detection box cropped and resized) — is built here, not in
the core. Test-time augmentation is the embedder's own (``emb.flip=true``, ``emb.jitter=8``; ``flip=on``
is short for ``emb.flip=true``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceprint import subject
from faceprint.alignment import BoxCrop, chip_specs, cut_chips
from faceprint.evaluation import EvaluationError
from faceprint.evaluation.cache import Detections, EmbeddingCache, array_hash, file_hash
from faceprint.models import DEFAULT_EMBEDDER
from faceprint.types import Detection

SUBJECT: subject.Strategy = "largest-central"  # which face of an image is the one evaluated
_PLAIN = (bool, int, float, str, tuple, type(None))
_FALLBACK_SPAN = 0.6  # fraction of the short image side the template covers when no face was ever found


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


_SWITCH = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True)
class PipelineConfig:
    """One evaluated configuration: detector and its options, embedder and its options, alignment."""

    label: str = "default"
    detector: str = "mtcnn"
    detector_options: tuple[tuple[str, Any], ...] = ()
    embedder: str = DEFAULT_EMBEDDER
    embedder_options: tuple[tuple[str, Any], ...] = ()
    align: bool = True

    @classmethod
    def parse(cls, spec: str) -> PipelineConfig:
        """``LABEL:key=value,...`` with keys detector, embedder, align (on/off), flip (on/off: the
        embedder's ``emb.flip``), ``det.OPTION`` and ``emb.OPTION`` (e.g. ``big:det.min_face_size=40``,
        ``tta:emb.flip=true,emb.jitter=8``); values are JSON or text."""
        label, _, body = spec.partition(":") if ":" in spec else ("", "", spec)
        fields: dict[str, Any] = {}
        det, emb = {}, {}
        for item in filter(None, (s.strip() for s in body.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise EvaluationError(f"configuration {spec!r}: {item!r} is not key=value")
            if key in ("detector", "embedder"):
                fields[key] = value
            elif key in ("align", "flip"):
                if value.lower() not in _SWITCH:
                    raise EvaluationError(f"configuration {spec!r}: {key} must be on or off, got {value!r}")
                if key == "flip":
                    emb["flip"] = _SWITCH[value.lower()]
                else:
                    fields[key] = _SWITCH[value.lower()]
            elif key.startswith("det."):
                det[key[4:]] = _parse_value(value)
            elif key.startswith("emb."):
                emb[key[4:]] = _parse_value(value)
            else:
                raise EvaluationError(
                    f"configuration {spec!r}: unknown key {key!r} "
                    "(use detector, embedder, align, flip, det.OPTION, emb.OPTION)"
                )
        config = cls(
            label=label or body or "default",
            detector_options=tuple(sorted(det.items())),
            embedder_options=tuple(sorted(emb.items())),
            **fields,
        )
        return config

    def describe(self) -> str:
        parts = [f"detector={self.detector}", f"embedder={self.embedder}"]
        parts += [f"det.{k}={v}" for k, v in self.detector_options]
        parts += [f"emb.{k}={v}" for k, v in self.embedder_options]
        parts.append(f"align={'on' if self.align else 'off'}")
        return ", ".join(parts)


@dataclass(frozen=True)
class ImageSource:
    """An image to embed: its content hash (the cache key) and how to decode it."""

    key: str
    name: str
    load: Callable[[], np.ndarray] = field(repr=False)

    @classmethod
    def from_path(cls, path: Path) -> ImageSource:
        from faceprint.io import load_image

        return cls(file_hash(path), str(path), lambda: load_image(path))

    @classmethod
    def from_array(cls, name: str, image: np.ndarray) -> ImageSource:
        return cls(array_hash(image), name, lambda: image)


@dataclass(frozen=True)
class EmbeddingRun:
    """Embeddings of a list of images, in order, with what the pipeline found and what it cost."""

    config: PipelineConfig
    names: tuple[str, ...]
    vectors: np.ndarray = field(repr=False)  # (N, D) float32, L2-normalised
    found: np.ndarray = field(repr=False)  # (N,) bool: a face was detected (False: fallback alignment)
    landmarks: np.ndarray = field(repr=False)  # (N, 5, 2) landmarks used for the chip
    embedded: int  # images embedded in this run (the rest came from the cache; no-face ones never do)
    seconds: float


def subject_face(found: Detections) -> Detection | None:
    """The face of an image that evaluation embeds (:data:`SUBJECT`), None when there is none."""
    return subject.pick(found.faces, SUBJECT, found.shape)


class EmbeddingRunner:
    """Runs one :class:`PipelineConfig` over images; ``cache=None`` disables caching."""

    def __init__(
        self,
        config: PipelineConfig = PipelineConfig(),
        *,
        cache: EmbeddingCache | None = None,
        batch_size: int = 16,
        progress: bool = True,
    ) -> None:
        from faceprint.analyzer import FaceAnalyzer

        self.config = config
        self.analyzer = FaceAnalyzer(
            config.detector,
            config.embedder,
            detector_options=dict(config.detector_options),
            embedder_options=dict(config.embedder_options),
        )
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress

    @property
    def detector_key(self) -> str:
        """The detector's name, version and every public setting it resolved (defaults included), so a
        changed default or a code change that moves boxes is a different key."""
        det = self.analyzer.detector
        settings = {
            k: v for k, v in sorted(vars(det).items()) if not k.startswith("_") and isinstance(v, _PLAIN)
        }
        return json.dumps({"detector": det.name, "version": det.version, "settings": settings})

    @property
    def config_key(self) -> str:
        emb = self.analyzer.embedder
        return json.dumps(
            {
                "embedder": [emb.name, emb.version, self.config.embedder_options],
                "detector": self.detector_key,
                "align": self.config.align,
            }
        )

    def embed_paths(self, paths: Sequence[Path]) -> EmbeddingRun:
        return self.embed_sources([ImageSource.from_path(Path(p)) for p in paths])

    def embed_sources(self, sources: Sequence[ImageSource]) -> EmbeddingRun:
        """Embeddings of every source, taken from the cache where present."""
        start = time.perf_counter()
        unique = list({s.key: s for s in sources}.values())
        keys = [s.key for s in unique]
        det_key, cfg_key = self.detector_key, self.config_key
        detections: dict[str, Detections] = self.cache.get_detections(det_key, keys) if self.cache else {}
        vectors: dict[str, np.ndarray] = self.cache.get_embeddings(cfg_key, keys) if self.cache else {}
        # No-face images are never in the embedding cache (their fallback depends on the run), so they
        # are decoded again on every run; there are few.
        todo = [s for s in unique if s.key not in vectors or s.key not in detections]
        no_face: dict[str, np.ndarray] = {}
        with _progress(len(todo), self.config.label, self.progress) as bar:
            for i in range(0, len(todo), self.batch_size):
                batch = todo[i : i + self.batch_size]
                arrays = [s.load() for s in batch]
                need = [k for k, s in enumerate(batch) if s.key not in detections]
                if need:
                    found = self.analyzer.detector.detect_batch([arrays[k] for k in need])
                    fresh = {
                        batch[k].key: Detections(arrays[k].shape[:2], dets)
                        for k, dets in zip(need, found, strict=True)
                    }
                    detections.update(fresh)
                    if self.cache:
                        self.cache.put_detections(det_key, fresh)
                faces = {}
                for s, image in zip(batch, arrays, strict=True):
                    face = subject_face(detections[s.key])
                    if face is None:
                        no_face[s.key] = image
                    else:
                        faces[s.key] = (image, face)
                if faces:
                    chips = np.stack([self._chip(img, f.landmarks, f.box) for img, f in faces.values()])
                    fresh_vecs = dict(zip(faces, self.analyzer.embed_chips(chips), strict=True))
                    vectors.update(fresh_vecs)
                    if self.cache:
                        self.cache.put_embeddings(cfg_key, fresh_vecs)
                bar.update(len(batch))
        marks = {}
        for key, found in detections.items():
            face = subject_face(found)
            if face is not None:
                marks[key] = np.asarray(face.landmarks, np.float32)
        if no_face:
            self._fallback(no_face, marks, detections, vectors)
        return EmbeddingRun(
            config=self.config,
            names=tuple(s.name for s in sources),
            vectors=np.stack([vectors[s.key] for s in sources]).astype(np.float32),
            found=np.array([s.key not in no_face for s in sources]),
            landmarks=np.stack([marks[s.key] for s in sources]),
            embedded=len(todo),
            seconds=time.perf_counter() - start,
        )

    def _fallback(
        self,
        images: dict[str, np.ndarray],
        marks: dict[str, np.ndarray],
        detections: dict[str, Detections],
        vectors: dict[str, np.ndarray],
    ) -> None:
        """Embed images without a detected face at the run's median relative landmark positions."""
        with_face = [k for k in marks if k not in images]
        if with_face:
            relative = np.median(
                [marks[k] / np.array(detections[k].shape[::-1], np.float32) for k in with_face], axis=0
            )
        else:
            emb = self.analyzer.embedder
            relative = (emb.template() / emb.input_size - 0.5) * _FALLBACK_SPAN + 0.5
        chips = []
        for key, image in images.items():
            h, w = image.shape[:2]
            marks[key] = (relative * np.array([w, h])).astype(np.float32)
            chips.append(self._chip(image, marks[key], (0.0, 0.0, float(w), float(h))))
        vectors.update(zip(images, self.analyzer.embed_chips(np.stack(chips)), strict=True))

    def _chip(self, image: np.ndarray, landmarks: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
        if self.config.align:
            return self.analyzer.align(image, [Detection(tuple(box), 1.0, landmarks)])[0]
        # Each of the embedder's chips (one, or one per network of a fusion) as a plain box crop.
        specs = [BoxCrop(spec.size) for spec in chip_specs(self.analyzer.embedder)]
        return cut_chips(image, [(box, landmarks)], specs)[0]


def crop_box(image: np.ndarray, box: tuple[float, ...], size: int) -> np.ndarray:
    """The square around a box's centre (side = the box's longer side) resized to ``size``; black
    outside the image (:class:`faceprint.alignment.BoxCrop`)."""
    return cut_chips(image, [(box, np.zeros((5, 2)))], [BoxCrop(size)])[0]


class _progress:
    """tqdm progress bar on stderr, or a no-op when disabled or when stderr is no terminal (a log file
    or a pipe gets no bar)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        import sys

        self._bar = None
        if enabled and total and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=f"embedding [{label}]", unit="img", leave=False, file=sys.stderr
            )

    def __enter__(self) -> _progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)
