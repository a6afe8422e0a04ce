"""The track ledger of a video run: what each live track has gathered (evidence, best crop, timing),
the events of its life, and where it goes when it ends (a count per name, unknowns to clusters)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from faceprint.names import slug
from faceprint.types import UNKNOWN
from faceprint.video.clustering import UnknownClusters
from faceprint.video.identity import Identity, TrackEvidence
from faceprint.video.options import WatchOptions
from faceprint.video.outputs import OutputSink, TrackLabel
from faceprint.video.sources import Frame
from faceprint.video.tracking import Track, TrackerStep


@dataclass(eq=False)
class TrackInfo:
    evidence: TrackEvidence
    start: float
    last_seen: float
    frames: int = 0
    announced: str | None = None  # the name last reported in an "identified" event
    crop: np.ndarray | None = field(default=None, repr=False)
    crop_quality: float = -1.0
    # Samples far from the track's identity, held back until enough agree that someone else stands there.
    far: list[tuple[np.ndarray, float, float]] = field(default_factory=list, repr=False)


class TrackLedger:
    """Per-track records of one run, keyed by track id; events go to ``sink``."""

    def __init__(self, options: WatchOptions, clusters: UnknownClusters, sink: OutputSink) -> None:
        self.o = options
        self.clusters = clusters
        self.sink = sink
        self.info: dict[int, TrackInfo] = {}
        self.names: Counter[str] = Counter()
        self.started = 0

    def __getitem__(self, track_id: int) -> TrackInfo:
        return self.info[track_id]

    def step(self, step: TrackerStep, frame: Frame) -> None:
        """Record a tracker step: ended tracks first, then new ones, then who was seen."""
        for track in step.ended:
            self.end(track, frame)
        for track in step.started:
            self.start(track, frame)
        for track in step.active:
            if track.detection is not None:
                self.info[track.track_id].last_seen = frame.timestamp
            self.info[track.track_id].frames += 1

    def young_pending(self) -> bool:
        # A new face with a first good sample is detected on the next frames too, until it has the samples
        # for a name: it gets named within a frame or two instead of waiting out the detection interval.
        # Faces too poor to embed (a crowd's tiny faces) do not force detection.
        return any(
            info.evidence.samples and not info.evidence.decided and info.frames < 3 * self.o.min_samples
            for info in self.info.values()
        )

    def start(self, track: Track, frame: Frame) -> None:
        self.started += 1
        ev = TrackEvidence(max_samples=self.o.max_samples, min_samples=self.o.min_samples)
        self.info[track.track_id] = TrackInfo(ev, frame.timestamp, frame.timestamp)
        self.sink.event("track_started", frame, track=track.track_id, box=[round(v, 1) for v in track.box])

    def announce(self, track: Track, frame: Frame) -> None:
        """An "identified" event when the track's name changed since the last one."""
        info = self.info[track.track_id]
        identity = info.evidence.identity
        if identity.name != info.announced:
            info.announced = identity.name
            self.sink.event("identified", frame, track=track.track_id, **identity_fields(identity))

    def end(self, track: Track, frame: Frame | None) -> None:
        info = self.info.pop(track.track_id)
        ev = info.evidence
        name = ev.identity.name if ev.decided else UNKNOWN
        self.names[name] += 1
        crop_path = self.sink.crop(f"track_{track.track_id}_{slug(name)}.jpg", info.crop)
        cluster = None
        if name == UNKNOWN and ev.samples:
            cluster = self.clusters.add(
                track.track_id,
                np.stack([s.embedding for s in ev.samples]),
                [s.quality for s in ev.samples],
                info.start,
                info.last_seen,
                info.crop,
                info.crop_quality,
            )
        self.sink.event(
            "track_ended",
            frame,
            track=track.track_id,
            start=round(info.start, 3),
            end=round(info.last_seen, 3),
            frames=info.frames,
            **identity_fields(ev.identity if ev.decided else Identity(UNKNOWN, None, None, 0.0, 0)),
            crop=crop_path,
            cluster=cluster,
        )

    def label(self, track: Track) -> TrackLabel:
        ev = self.info[track.track_id].evidence
        identity = ev.identity
        return TrackLabel(
            track.box,
            track.track_id,
            identity.name,
            identity.confidence,
            identity.name != UNKNOWN,
            not ev.decided,
        )


def identity_fields(identity: Identity) -> dict[str, object]:
    return {
        "name": identity.name,
        "person_id": identity.person_id,
        "distance": None if identity.distance is None else round(identity.distance, 4),
        "confidence": round(identity.confidence, 4),
        "samples": identity.samples,
    }
