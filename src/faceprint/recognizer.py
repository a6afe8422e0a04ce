"""Recognizer: who is in this picture — a gallery name for every face, or "unknown".

``Recognizer`` composes a ``FaceAnalyzer`` (detect -> align -> embed) with a ``Gallery`` (exact search)
and the calibrated threshold/confidence of the analyzer's embedder (``faceprint.thresholds``). Every
same/different decision goes through :func:`decide`: a gallery's ``verify``/``identify`` and the
gallery-free ``compare`` (:func:`verify`) alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from faceprint.gallery import Candidate, Gallery
from faceprint.io import ImageInput
from faceprint.thresholds import Calibration, embedder_calibration
from faceprint.types import UNKNOWN, EmbedderKey, Face

__all__ = ["Candidate", "Match", "Recognizer", "Verification", "decide", "verify"]


@dataclass(frozen=True)
class Match:
    """The identity decided for one face."""

    face: Face | None
    name: str  # person name, or "unknown"
    person_id: int | None
    distance: float  # to the best candidate; inf if the gallery is empty
    confidence: float  # calibrated P(same person as the best candidate), in [0, 1]
    candidates: tuple[Candidate, ...]  # top-k nearest people, nearest first

    @property
    def known(self) -> bool:
        return self.person_id is not None


@dataclass(frozen=True)
class Verification:
    """1:1 comparison of the faces of two images."""

    distance: float
    same: bool
    confidence: float  # calibrated P(same person)
    threshold: float


def decide(distance: float, calibration: Calibration, threshold: float | None = None) -> Verification:
    """Same person or not at ``threshold`` (None: the calibration's), with the calibrated confidence."""
    limit = calibration.threshold if threshold is None else float(threshold)
    return Verification(distance, distance <= limit, float(calibration.confidence(distance)), limit)


def verify(
    analyzer,
    image_a: ImageInput,
    image_b: ImageInput,
    *,
    calibration: Calibration | None = None,
    threshold: float | None = None,
) -> Verification:
    """Are the single faces of two images the same person? Without a ``calibration``, the built-in one
    of the analyzer's embedder (no gallery needed: what `faceprint compare` does)."""
    a, b = (analyzer.analyze_one(img) for img in (image_a, image_b))
    distance = float(np.linalg.norm(a.embedding - b.embedding))
    return decide(distance, calibration or embedder_calibration(analyzer.embedder), threshold)


class Recognizer:
    """Identify faces against a gallery. ``threshold`` overrides the gallery's and the calibrated one."""

    def __init__(self, gallery: Gallery, analyzer=None, threshold: float | None = None) -> None:
        if analyzer is None:
            from faceprint.analyzer import FaceAnalyzer

            analyzer = FaceAnalyzer()
        self.gallery = gallery
        self.analyzer = analyzer
        self.threshold_override = threshold

    @property
    def calibration(self) -> Calibration:
        embedder = self.analyzer.embedder
        return self.gallery.calibration(EmbedderKey.of(embedder), getattr(embedder, "threshold", None))

    def threshold(self, override: float | None = None) -> float:
        """The distance threshold in force: call > recognizer > gallery > calibration > embedder."""
        for value in (override, self.threshold_override):
            if value is not None:
                return float(value)
        return self.calibration.threshold

    def identify(self, image: ImageInput, top_k: int = 1, *, threshold: float | None = None) -> list[Match]:
        """A match for every face in the image, in the detector's order."""
        return self.match_faces(self.analyzer.analyze(image), top_k, threshold=threshold)

    def match_faces(
        self, faces: list[Face], top_k: int = 1, *, threshold: float | None = None
    ) -> list[Match]:
        """Decide each face (with an embedding) against the gallery: the nearest person if within the
        threshold, else "unknown"; ``candidates`` lists the ``top_k`` nearest either way."""
        if not faces:
            return []
        if any(f.embedding is None for f in faces):
            raise ValueError("match_faces needs faces with embeddings (FaceAnalyzer.analyze gives them)")
        limit = self.threshold(threshold)
        calibration = self.calibration
        found = self.gallery.search(
            np.stack([f.embedding for f in faces]), EmbedderKey.of(self.analyzer.embedder), top_k
        )
        matches = []
        for face, candidates in zip(faces, found, strict=True):
            if not candidates:
                matches.append(Match(face, UNKNOWN, None, math.inf, 0.0, ()))
                continue
            best = candidates[0]
            verdict = decide(best.distance, calibration, limit)
            if verdict.same:
                matches.append(
                    Match(face, best.name, best.person_id, best.distance, verdict.confidence, candidates)
                )
            else:
                matches.append(Match(face, UNKNOWN, None, best.distance, verdict.confidence, candidates))
        return matches

    def verify(
        self, image_a: ImageInput, image_b: ImageInput, *, threshold: float | None = None
    ) -> Verification:
        """Are the single faces of two images the same person? (This gallery's threshold in force.)"""
        return verify(
            self.analyzer, image_a, image_b, calibration=self.calibration, threshold=self.threshold(threshold)
        )
