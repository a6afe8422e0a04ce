"""Enrol from a camera or a clip: pick K good, varied frames of the single face present.

Good = one face only, large, sharp and near-frontal (see :mod:`faceprint.quality`); varied = the picks
differ in head pose and are spread in time, so the gallery gets more than K copies of one frame.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from faceprint.errors import ManyFacesError, NoFaceError
from faceprint.quality import FaceQuality, face_quality
from faceprint.video.sources import open_source

if TYPE_CHECKING:
    from faceprint.analyzer import FaceAnalyzer

# A candidate frame must reach this quality (0..1) to be enrolled at all.
MIN_QUALITY = 0.2
# Frames a clip is sampled down to: enough for variety, bounded work for long files.
CLIP_SAMPLES = 60


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class _Candidate:
    image: np.ndarray = field(repr=False)
    quality: FaceQuality
    timestamp: float
    embedding: np.ndarray = field(repr=False)


def pick_enrollment_frames(
    source: int | str,
    k: int = 5,
    *,
    analyzer: FaceAnalyzer | None = None,
    max_seconds: float = 10.0,
) -> list[np.ndarray]:
    """Up to ``k`` RGB frames of ``source`` (camera index, video file, stream URL or folder of frames), each
    with exactly one good face, chosen for quality and variety of pose. A camera is watched for up to
    ``max_seconds`` (less once plenty of good frames are in); a file is sampled across its whole length.

    Raises NoFaceError when no frame has a single usable face, ManyFacesError when the frames with faces
    mostly show several people, or different people one after another. Frames of someone other than the
    person in the best frame are left out.
    """
    if analyzer is None:
        from faceprint.analyzer import FaceAnalyzer

        analyzer = FaceAnalyzer()
    video = open_source(source)
    step = max(1, math.ceil(getattr(video, "frame_count", 0) / CLIP_SAMPLES)) if not video.live else 1
    candidates: list[_Candidate] = []
    seen = several = poor = 0
    started = time.monotonic()
    try:
        for frame in video:
            if frame.index % step:
                continue
            seen += 1
            detections = analyzer.detect(frame.image)
            if len(detections) > 1:
                several += 1
            elif detections:
                quality = face_quality(frame.image, detections[0])
                if quality.score >= MIN_QUALITY:
                    vector = analyzer.embed_chips(analyzer.align(frame.image, detections))[0]
                    candidates.append(_Candidate(frame.image, quality, frame.timestamp, vector))
                    if len(candidates) > 4 * k:  # bounded memory: full frames are big
                        candidates.remove(min(candidates, key=lambda c: c.quality.score))
                else:
                    poor += 1
            if video.live and (time.monotonic() - started > max_seconds or seen >= CLIP_SAMPLES):
                break
    finally:
        video.close()
    if not candidates:
        if several and several >= seen / 2:
            raise ManyFacesError(
                f"{video.name}: {several} of {seen} frames show several faces; "
                "enrolment needs one person alone in the picture"
            )
        raise NoFaceError(
            f"{video.name}: no frame with a single clear face ({seen} frames looked at: "
            f"{several} with several faces, {poor} with a face too small, blurred or turned away)"
        )
    return [c.image for c in _varied(_one_person(candidates, analyzer.embedder.threshold, video.name), k)]


def _one_person(candidates: list[_Candidate], threshold: float, name: str) -> list[_Candidate]:
    """The candidates showing the same person as the best one; a clip of several people, one at a time,
    must not be enrolled under one name."""
    best = max(candidates, key=lambda c: c.quality.score)
    same = [c for c in candidates if np.linalg.norm(c.embedding - best.embedding) <= threshold]
    if 2 * len(same) < len(candidates):
        raise ManyFacesError(
            f"{name}: the frames with one face show different people ({len(candidates) - len(same)} of "
            f"{len(candidates)} good frames are not the person in the best one); use a clip of one person"
        )
    return same


def _varied(candidates: list[_Candidate], k: int) -> list[_Candidate]:
    """Greedy pick: best quality first, then whatever adds most pose and time variety, weighted by quality."""
    chosen = [max(candidates, key=lambda c: c.quality.score)]
    rest = [c for c in candidates if c is not chosen[0]]
    span = max(c.timestamp for c in candidates) - min(c.timestamp for c in candidates) or 1.0
    while rest and len(chosen) < k:

        def gain(c: _Candidate) -> float:
            novelty = min(
                abs(c.quality.yaw - p.quality.yaw)
                + abs(c.quality.pitch - p.quality.pitch)
                + 0.2 * abs(c.timestamp - p.timestamp) / span
                for p in chosen
            )
            return c.quality.score * novelty

        best = max(rest, key=gain)
        chosen.append(best)
        rest.remove(best)
    return chosen
