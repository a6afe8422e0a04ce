"""The real-time loop: read -> (detect every N frames | predict) -> track -> embed when worth it -> decide the
name per track from accumulated evidence -> draw, write, show, log events.

Detection, alignment and embedding go through ``FaceAnalyzer``; names come from the gallery's ``Recognizer``.
This module adds only what video needs on top: scheduling, tracking, evidence and outputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from faceprint.quality import face_quality
from faceprint.types import Detection
from faceprint.video.clustering import UnknownClusters
from faceprint.video.ledger import TrackLedger
from faceprint.video.options import WatchOptions
from faceprint.video.outputs import OutputSink, TrackLabel, annotate, crop_face
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


SPLIT_SAMPLES = 2


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
        on_event: Callable[[dict[str, Any]], None] | None = None,
        clusters: UnknownClusters | None = None,
    ) -> RunSummary:
        """Process ``source`` until it ends, ``max_frames``, Ctrl-C or the window closes; outputs are flushed
        and closed in every case. A source that breaks raises after the outputs are closed.

        ``on_frame`` receives every processed frame with its tracks' labels (for embedding the loop in an
        application, and for measuring it); ``on_event`` every event as the events file has it; unknown
        tracks join ``clusters`` when given (an application's own, e.g. the service's review), else the
        run's own."""
        try:
            run = _Run(self, source, video_out, events_out, crops_dir, unknowns_dir, show, on_frame, clusters)
            run.sink.on_event = on_event
        except BaseException:  # an output that cannot be opened: the source is ours to close
            source.close()
            raise
        return run.loop(max_frames)


class _Run:
    """One pass over a source: the loop and its per-frame steps (schedule detection, track, embed, decide),
    with the track ledger (``TrackLedger``) and the outputs (``OutputSink``) it feeds."""

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
        clusters: UnknownClusters | None = None,
    ) -> None:
        self.o = owner.options
        self.analyzer, self.recognizer, self.source = owner.analyzer, owner.recognizer, source
        fps = source.fps or 25.0
        self.tracker = Tracker(max_misses=max(1, math.ceil(self.o.track_timeout * fps / self.o.detect_every)))
        threshold = owner._threshold()
        self.split_distance = self.o.split_distance or 1.3 * threshold
        embedder = self.analyzer.embedder
        if clusters is None:
            clusters = UnknownClusters(threshold, (embedder.name, embedder.version))
        self.unknowns_dir = unknowns_dir
        self.sink = OutputSink(source.name, fps, video_out, events_out, crops_dir, show, on_frame)
        self.ledger = TrackLedger(self.o, clusters, self.sink)
        self.stage = dict.fromkeys(STAGES, 0.0)
        self.frames = 0
        self._thumb: np.ndarray | None = None

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
                if self.sink.closed_by_user or (max_frames is not None and self.frames >= max_frames):
                    interrupted = self.sink.closed_by_user
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
            self.ledger.started,
            dict(self.ledger.names),
            len(self.ledger.clusters.clusters),
            interrupted,
        )

    def _frame(self, frame: Frame) -> None:
        t = time.perf_counter()
        cut = self._scene_cut(frame.image)
        if cut:
            for track in self.tracker.end_all():
                self.ledger.end(track, frame)
        detections = None
        if cut or self.frames % self.o.detect_every == 0 or self.ledger.young_pending():
            detections = self._detect(frame.image)
        t = self._tick("detect", t)
        step = self.tracker.step(detections)
        self.ledger.step(step, frame)
        t = self._tick("track", t)
        if detections:
            self._embed_and_decide(frame, [tr for tr in step.active if tr.detection is not None], t)
        t = time.perf_counter()
        labels = [self.ledger.label(tr) for tr in self.tracker.tracks]
        if self.sink.on_frame is not None:
            self.sink.on_frame(frame, labels)
        if self.sink.draws:
            canvas = annotate(frame.image, labels)
            t = self._tick("draw", t)
            self.sink.show(canvas)
            self._tick("output", t)

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

    def _embed_and_decide(self, frame: Frame, tracks: list[Track], t: float) -> None:
        chosen, qualities = [], []
        for track in tracks:
            assert track.detection is not None
            quality = face_quality(frame.image, track.detection).score
            ev = self.ledger[track.track_id].evidence
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
            info = self.ledger[track.track_id]
            if info.evidence.samples and info.evidence.distance_to(vec) > self.split_distance:
                # One odd frame (motion blur, a hand, an extreme pose) is not a new person: split only when
                # SPLIT_SAMPLES far samples in a row agree that someone else now stands where the track was
                # (a cut the thumbnail missed, or an ID swap).
                info.far.append((vec, quality, frame.timestamp))
                if len(info.far) < SPLIT_SAMPLES:
                    continue
                far = info.far
                self.ledger.end(track, frame)
                track = self.tracker.restart(track)
                self.ledger.start(track, frame)
                info = self.ledger[track.track_id]
                for sample in far[:-1]:
                    info.evidence.add(*sample)
            else:
                info.far.clear()
            info.evidence.add(vec, quality, frame.timestamp)
            if quality > info.crop_quality:
                info.crop, info.crop_quality = crop_face(frame.image, track.box), quality
            if info.evidence.decided:
                deciding.append(track)
        if deciding and self.recognizer is not None:
            batches = [self.ledger[tr.track_id].evidence.faces(tr.detection) for tr in deciding]  # type: ignore[arg-type]
            matches = self.recognizer.match_faces([f for b in batches for f in b])
            k = 0
            for track, batch in zip(deciding, batches, strict=True):
                self.ledger[track.track_id].evidence.decide(matches[k : k + len(batch)])
                k += len(batch)
        for track in deciding:
            self.ledger.announce(track, frame)
        self._tick("match", t)

    def _finish(self, frame: Frame | None, interrupted: bool, error: str | None, seconds: float) -> None:
        for track in self.tracker.end_all():
            self.ledger.end(track, frame)
        if self.unknowns_dir is not None:
            self.ledger.clusters.save(self.unknowns_dir)
        self.sink.event(
            "run_ended",
            frame,
            frames=self.frames,
            dropped=self.source.dropped,
            seconds=round(seconds, 3),
            tracks=self.ledger.started,
            unknown_clusters=len(self.ledger.clusters.clusters),
            interrupted=interrupted,
            error=error,
        )
        self.sink.close()
        self.source.close()
