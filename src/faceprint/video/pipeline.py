"""The real-time loop: read -> (detect every N frames | predict) -> track -> embed when worth it -> decide the
name per track from accumulated evidence -> draw, write, show, log events.

Detection, alignment and embedding go through ``FaceAnalyzer``; names come from the gallery's ``Recognizer``.
This module adds only what video needs on top: scheduling, tracking, evidence and outputs.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from faceprint.types import Detection
from faceprint.video.clustering import UnknownClusters
from faceprint.video.identity import UNKNOWN, Identity, TrackEvidence
from faceprint.video.options import WatchOptions
from faceprint.video.outputs import (
    EventLog,
    TrackLabel,
    VideoFileWriter,
    Window,
    annotate,
    crop_face,
    save_crop,
)
from faceprint.video.quality import face_quality
from faceprint.video.sources import Frame, VideoSource
from faceprint.video.tracking import Track, Tracker

if TYPE_CHECKING:
    from faceprint.analyzer import FaceAnalyzer
    from faceprint.recognizer import Recognizer

STAGES = ("read", "detect", "track", "embed", "match", "draw", "output")


@dataclass(frozen=True)
class RunSummary:
    source: str
    frames: int  # frames processed
    dropped: int  # frames a live source skipped because processing was slower
    seconds: float  # wall time of the loop
    stage_ms: dict[str, float]  # mean milliseconds per processed frame, by stage
    tracks: int  # tracks started
    names: dict[str, int]  # tracks ended per final name (UNKNOWN included)
    clusters: int  # clusters of unknown tracks
    interrupted: bool  # stopped by Ctrl-C or the window

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(eq=False)
class _TrackInfo:
    evidence: TrackEvidence
    start: float
    last_seen: float
    frames: int = 0
    announced: str | None = None  # the name last reported in an "identified" event
    crop: np.ndarray | None = field(default=None, repr=False)
    crop_quality: float = -1.0


class VideoRecognizer:
    """Recognise and track faces through a video source, writing the requested outputs."""

    def __init__(
        self,
        analyzer: FaceAnalyzer,
        recognizer: Recognizer | None = None,
        options: WatchOptions | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.recognizer = recognizer
        self.options = options or WatchOptions()

    def _threshold(self) -> float:
        if self.recognizer is not None:
            return float(self.recognizer.threshold())
        return float(self.analyzer.embedder.threshold)

    def run(
        self,
        source: VideoSource,
        *,
        video_out: Path | None = None,
        events_out: Path | None = None,
        crops_dir: Path | None = None,
        unknowns_dir: Path | None = None,
        show: bool = False,
        max_frames: int | None = None,
        on_frame: Callable[[Frame, list[TrackLabel]], None] | None = None,
    ) -> RunSummary:
        """Process ``source`` until it ends, ``max_frames``, Ctrl-C or the window closes; outputs are flushed
        and closed in every case. A source that breaks raises after the outputs are closed.

        ``on_frame`` receives every processed frame with its tracks' labels (for embedding the loop in an
        application, and for measuring it)."""
        try:
            run = _Run(self, source, video_out, events_out, crops_dir, unknowns_dir, show, on_frame)
        except BaseException:  # an output that cannot be opened: the source is ours to close
            source.close()
            raise
        return run.loop(max_frames)


class _Run:
    """State of one pass over a source."""

    def __init__(
        self,
        owner: VideoRecognizer,
        source: VideoSource,
        video_out: Path | None,
        events_out: Path | None,
        crops_dir: Path | None,
        unknowns_dir: Path | None,
        show: bool,
        on_frame: Callable[[Frame, list[TrackLabel]], None] | None,
    ) -> None:
        self.o = owner.options
        self.on_frame = on_frame
        self.analyzer, self.recognizer, self.source = owner.analyzer, owner.recognizer, source
        fps = source.fps or 25.0
        self.tracker = Tracker(max_misses=max(1, math.ceil(self.o.track_timeout * fps / self.o.detect_every)))
        threshold = owner._threshold()
        self.split_distance = self.o.split_distance or 1.3 * threshold
        embedder = self.analyzer.embedder
        self.clusters = UnknownClusters(threshold, (embedder.name, embedder.version))
        self.unknowns_dir, self.crops_dir = unknowns_dir, crops_dir
        if crops_dir is not None:
            Path(crops_dir).mkdir(parents=True, exist_ok=True)
        self.writer = VideoFileWriter(video_out, fps) if video_out is not None else None
        self.events = EventLog(events_out) if events_out is not None else None
        self.window = Window(source.name) if show and Window.available() else None
        self.info: dict[int, _TrackInfo] = {}
        self.stage = dict.fromkeys(STAGES, 0.0)
        self.names: Counter[str] = Counter()
        self.started = 0
        self.frames = 0
        self._thumb: np.ndarray | None = None

    # -- the loop -------------------------------------------------------------------------------------

    def loop(self, max_frames: int | None) -> RunSummary:
        interrupted, error = False, None
        t0 = time.perf_counter()
        last = t0
        frame: Frame | None = None
        try:
            for frame in self.source:
                now = time.perf_counter()
                self.stage["read"] += now - last
                self._frame(frame)
                self.frames += 1
                last = time.perf_counter()
                if (self.window is not None and self.window.closed) or (
                    max_frames is not None and self.frames >= max_frames
                ):
                    interrupted = self.window is not None and self.window.closed
                    break
        except KeyboardInterrupt:
            interrupted = True
        except Exception as err:  # recorded in the events file, then raised on after the outputs close
            error = str(err)
            raise
        finally:
            seconds = time.perf_counter() - t0
            self._finish(frame, interrupted, error, seconds)
        return RunSummary(
            self.source.name,
            self.frames,
            self.source.dropped,
            seconds,
            {k: 1000 * v / max(1, self.frames) for k, v in self.stage.items()},
            self.started,
            dict(self.names),
            len(self.clusters.clusters),
            interrupted,
        )

    def _frame(self, frame: Frame) -> None:
        t = time.perf_counter()
        cut = self._scene_cut(frame.image)
        if cut:
            for track in self.tracker.end_all():
                self._ended(track, frame)
        detections = None
        if cut or self.frames % self.o.detect_every == 0 or self._young_pending():
            detections = self._detect(frame.image)
        t = self._tick("detect", t)
        step = self.tracker.step(detections)
        for track in step.ended:
            self._ended(track, frame)
        for track in step.started:
            self._started(track, frame)
        for track in step.active:
            if track.detection is not None:
                self.info[track.track_id].last_seen = frame.timestamp
            self.info[track.track_id].frames += 1
        t = self._tick("track", t)
        if detections:
            self._embed_and_decide(frame, [tr for tr in step.active if tr.detection is not None], t)
        t = time.perf_counter()
        labels = [self._label(tr) for tr in self.tracker.tracks]
        if self.on_frame is not None:
            self.on_frame(frame, labels)
        if self.writer is not None or self.window is not None:
            canvas = annotate(frame.image, labels)
            t = self._tick("draw", t)
            if self.writer is not None:
                self.writer.write(canvas)
            if self.window is not None:
                self.window.show(canvas)
            self._tick("output", t)

    def _young_pending(self) -> bool:
        # A new face with a first good sample is detected on the next frames too, until it has the samples
        # for a name: it gets named within a frame or two instead of waiting out the detection interval.
        # Faces too poor to embed (a crowd's tiny faces) do not force detection.
        return any(
            info.evidence.samples and not info.evidence.decided and info.frames < 3 * self.o.min_samples
            for info in self.info.values()
        )

    def _tick(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.stage[stage] += now - since
        return now

    def _scene_cut(self, image: np.ndarray) -> bool:
        # A cut swaps the whole picture at once; a tracker would otherwise carry a track (and its name)
        # over to whoever stands at the same place in the next shot.
        thumb = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (64, 36), interpolation=cv2.INTER_AREA)
        thumb = thumb.astype(np.float32)
        cut = self._thumb is not None and float(np.abs(thumb - self._thumb).mean()) > self.o.cut_threshold
        self._thumb = thumb
        return cut

    def _detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        if not self.o.detect_width or w <= self.o.detect_width:
            return self.analyzer.detect(image)
        scale = self.o.detect_width / w
        small = cv2.resize(image, (self.o.detect_width, round(h * scale)), interpolation=cv2.INTER_AREA)
        return [
            Detection(
                (d.box[0] / scale, d.box[1] / scale, d.box[2] / scale, d.box[3] / scale),
                d.score,
                (np.asarray(d.landmarks) / scale).astype(np.float32),
            )
            for d in self.analyzer.detect(small)
        ]

    # -- identity ------------------------------------------------------------------------------------

    def _embed_and_decide(self, frame: Frame, tracks: list[Track], t: float) -> None:
        chosen, qualities = [], []
        for track in tracks:
            assert track.detection is not None
            info = self.info[track.track_id]
            quality = face_quality(frame.image, track.detection).score
            ev = info.evidence
            due = (
                not ev.decided
                or frame.timestamp - ev.last_embedded >= self.o.embed_interval
                or quality > ev.best_quality * self.o.better_factor
            )
            if due and quality >= self.o.min_quality:
                chosen.append(track)
                qualities.append(quality)
        if not chosen:
            return
        detections = [tr.detection for tr in chosen]
        vectors = self.analyzer.embed_chips(self.analyzer.align(frame.image, detections))  # type: ignore[arg-type]
        t = self._tick("embed", t)
        deciding = []
        for track, vec, quality in zip(chosen, vectors, qualities, strict=True):
            info = self.info[track.track_id]
            if info.evidence.samples and info.evidence.distance_to(vec) > self.split_distance:
                # Someone else now stands where the track was (a cut the thumbnail missed, or an ID swap).
                self._ended(track, frame)
                track = self.tracker.restart(track)
                self._started(track, frame)
                info = self.info[track.track_id]
            info.evidence.add(vec, quality, frame.timestamp)
            if quality > info.crop_quality:
                info.crop, info.crop_quality = crop_face(frame.image, track.box), quality
            if info.evidence.decided:
                deciding.append(track)
        if deciding and self.recognizer is not None:
            batches = [self.info[tr.track_id].evidence.faces(tr.detection) for tr in deciding]  # type: ignore[arg-type]
            matches = self.recognizer.match_faces([f for b in batches for f in b])
            k = 0
            for track, batch in zip(deciding, batches, strict=True):
                self.info[track.track_id].evidence.decide(matches[k : k + len(batch)])
                k += len(batch)
        for track in deciding:
            self._announce(track, frame)
        self._tick("match", t)

    def _announce(self, track: Track, frame: Frame) -> None:
        info = self.info[track.track_id]
        identity = info.evidence.identity
        if identity.name != info.announced:
            info.announced = identity.name
            self._event("identified", frame, track=track.track_id, **_identity_fields(identity))

    # -- track life ----------------------------------------------------------------------------------

    def _started(self, track: Track, frame: Frame) -> None:
        self.started += 1
        ev = TrackEvidence(max_samples=self.o.max_samples, min_samples=self.o.min_samples)
        self.info[track.track_id] = _TrackInfo(ev, frame.timestamp, frame.timestamp)
        self._event("track_started", frame, track=track.track_id, box=[round(v, 1) for v in track.box])

    def _ended(self, track: Track, frame: Frame | None) -> None:
        info = self.info.pop(track.track_id)
        ev = info.evidence
        name = ev.identity.name if ev.decided else UNKNOWN
        self.names[name] += 1
        crop_path = cluster = None
        if self.crops_dir is not None and info.crop is not None and info.crop.size:
            crop_path = str(save_crop(self.crops_dir, f"track_{track.track_id}_{name}.jpg", info.crop))
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
        self._event(
            "track_ended",
            frame,
            track=track.track_id,
            start=round(info.start, 3),
            end=round(info.last_seen, 3),
            frames=info.frames,
            **_identity_fields(ev.identity if ev.decided else Identity(UNKNOWN, None, None, 0.0, 0)),
            crop=crop_path,
            cluster=cluster,
        )

    def _label(self, track: Track) -> TrackLabel:
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

    def _event(self, event: str, frame: Frame | None, **fields: object) -> None:
        if self.events is not None:
            where = {"frame": frame.index, "time": round(frame.timestamp, 3)} if frame is not None else {}
            self.events.write(event, **where, **fields)

    def _finish(self, frame: Frame | None, interrupted: bool, error: str | None, seconds: float) -> None:
        for track in self.tracker.end_all():
            self._ended(track, frame)
        if self.unknowns_dir is not None:
            self.clusters.save(self.unknowns_dir)
        if self.events is not None:
            self._event(
                "run_ended",
                frame,
                frames=self.frames,
                dropped=self.source.dropped,
                seconds=round(seconds, 3),
                tracks=self.started,
                unknown_clusters=len(self.clusters.clusters),
                interrupted=interrupted,
                error=error,
            )
            self.events.close()
        if self.writer is not None:
            self.writer.close()
        if self.window is not None:
            self.window.close()
        self.source.close()


def _identity_fields(identity: Identity) -> dict[str, object]:
    return {
        "name": identity.name,
        "person_id": identity.person_id,
        "distance": None if identity.distance is None else round(identity.distance, 4),
        "confidence": round(identity.confidence, 4),
        "samples": identity.samples,
    }
