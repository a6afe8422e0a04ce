"""Who a track is, decided from accumulated evidence rather than frame by frame.

A track keeps its best few embeddings (bounded). Its name is the gallery match of their mean, accepted only
when enough samples exist and most of them, matched one by one, agree — so one lucky frame never names a
stranger, and the label does not flicker as single frames vary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from faceprint.types import UNKNOWN, Detection, Face

if TYPE_CHECKING:
    from faceprint.recognizer import Match


@dataclass(frozen=True)
class Identity:
    name: str  # UNKNOWN when no enrolled person fits
    person_id: str | None
    distance: float | None  # of the mean embedding to the named person
    confidence: float  # in [0, 1]
    samples: int  # embeddings the decision rests on


PENDING = Identity(UNKNOWN, None, None, 0.0, 0)


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class Sample:
    embedding: np.ndarray  # (D,) L2-normalised
    quality: float
    time: float  # seconds into the source


class TrackEvidence:
    """Bounded store of a track's best embeddings and the identity decided from them."""

    def __init__(self, *, max_samples: int = 8, min_samples: int = 2) -> None:
        self.max_samples = max_samples
        self.min_samples = min_samples
        self.samples: list[Sample] = []
        self.identity = PENDING
        self.best_quality = 0.0
        self.last_embedded = -float("inf")

    @property
    def decided(self) -> bool:
        return len(self.samples) >= self.min_samples

    def mean(self) -> np.ndarray:
        vec = np.mean([s.embedding for s in self.samples], axis=0)
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)

    def distance_to(self, embedding: np.ndarray) -> float:
        """Distance of a new embedding to the track's mean (for telling a different face apart)."""
        return float(np.linalg.norm(self.mean() - embedding))

    def add(self, embedding: np.ndarray, quality: float, time: float) -> None:
        self.samples.append(Sample(embedding, quality, time))
        if len(self.samples) > self.max_samples:
            self.samples.remove(min(self.samples, key=lambda s: s.quality))
        self.best_quality = max(self.best_quality, quality)
        self.last_embedded = time

    def faces(self, detection: Detection) -> list[Face]:
        """The mean embedding then every sample, as faces for the recognizer's ``match_faces``."""
        vectors = [self.mean(), *(s.embedding for s in self.samples)]
        return [Face(detection.box, detection.score, detection.landmarks, v) for v in vectors]

    def decide(self, matches: Sequence[Match]) -> Identity:
        """Update the identity from the matches of ``faces()`` (mean first). Returns the new identity."""
        if not self.decided:
            return self.identity
        overall, singles = matches[0], matches[1:]
        votes = sum(1 for m in singles if m.person_id == overall.person_id)
        # A strict majority of the single samples must back the mean's match.
        if overall.name != UNKNOWN and 2 * votes > len(singles):
            self.identity = Identity(
                overall.name, overall.person_id, overall.distance, overall.confidence, len(self.samples)
            )
        else:
            # The mean fits nobody (the recognizer's confidence that it is not the nearest person), or it
            # fits someone the single samples do not back up (undecided).
            confidence = overall.answer_confidence if overall.name == UNKNOWN else 0.5
            self.identity = Identity(UNKNOWN, None, None, confidence, len(self.samples))
        return self.identity
