"""Video sources: webcam, video file, network stream, folder of frames — one interface, timestamped frames.

Live sources (cameras, streams, and files in real-time mode) are read by a background thread into a bounded
queue that drops the oldest frame when the consumer falls behind, so processing never lags the camera; the
number of dropped frames is counted and reported.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import cv2
import numpy as np

from faceprint.errors import FaceprintError, ImageError
from faceprint.io import IMAGE_EXTENSIONS, image_files, load_image

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


class VideoSourceError(FaceprintError):
    """A video source could not be opened, or it broke while being read."""


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class Frame:
    image: np.ndarray = field(repr=False)  # RGB uint8 HxWx3
    index: int  # position in the source (counts dropped frames too)
    timestamp: float  # seconds since the start of the source


class VideoSource(Protocol):
    name: str
    live: bool  # frames arrive in real time; slow consumers lose frames rather than lag
    fps: float  # nominal frame rate (0 when unknown)

    @property
    def dropped(self) -> int:
        """Frames skipped because the consumer was slower than the source."""
        ...

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def open_source(
    spec: int | str | Path, *, realtime: bool | None = None, loop: bool = False, queue_size: int = 2
) -> VideoSource:
    """Open a webcam index, a video file, a stream URL or a folder of frames.

    ``realtime``: pace the source at its frame rate and drop frames the consumer cannot keep up with.
    Default: on for cameras and streams (which are always live), off for files and folders (every frame).
    ``loop``: replay a file or folder from the start whenever it ends (kiosk demos, soak tests).
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        source: VideoSource = CaptureSource(int(spec), f"camera {spec}", live=True)
    elif isinstance(spec, str) and urlparse(spec).scheme.lower() in STREAM_SCHEMES:
        source = CaptureSource(spec, spec, live=True)
    else:
        path = Path(spec)
        if not path.exists():
            raise VideoSourceError(f"{path}: no such file or folder")
        source = FolderSource(path) if path.is_dir() else CaptureSource(str(path), str(path), live=False)
        if loop:
            source = Looped(source, lambda: open_source(path))
    if realtime is None:
        realtime = source.live
    if realtime:
        return LiveReader(source, queue_size=queue_size)
    return source


class CaptureSource:
    """Anything OpenCV's FFmpeg/V4L2 capture reads: camera index, file, stream URL. Reads on demand."""

    def __init__(self, target: int | str, name: str, *, live: bool, max_failed_reads: int = 25) -> None:
        self.name = name
        self.live = live
        self._capture = cv2.VideoCapture(target)
        if not self._capture.isOpened():
            self._capture.release()
            what = "camera" if isinstance(target, int) else ("stream" if live else "video file")
            raise VideoSourceError(
                f"{name}: cannot open this {what} (not a video OpenCV can decode, unreachable, or busy)"
            )
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 0 < fps < 1000 else 0.0
        self.frame_count = int(max(0, self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self._max_failed_reads = max_failed_reads
        self._index = 0
        self._started: float | None = None

    @property
    def dropped(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Frame]:
        failed = 0
        while True:
            ok, bgr = self._capture.read()
            if not ok or bgr is None:
                if not self.live:
                    return self._check_file_end()
                # A live stream that stops answering: retry briefly, then say so.
                failed += 1
                if failed >= self._max_failed_reads:
                    raise VideoSourceError(
                        f"{self.name}: stream stopped delivering frames after {self._index} frame(s) "
                        f"({failed} failed reads in a row); check the camera or the network"
                    )
                time.sleep(0.02)
                continue
            failed = 0
            yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._index, self._timestamp())
            self._index += 1

    def _timestamp(self) -> float:
        if not self.live:
            millis = self._capture.get(cv2.CAP_PROP_POS_MSEC)
            if millis > 0 or self._index == 0:
                return millis / 1000.0
            return self._index / self.fps if self.fps else float(self._index)
        now = time.monotonic()
        if self._started is None:
            self._started = now
        return now - self._started

    def _check_file_end(self) -> None:
        # A file that ends long before its header says it should is truncated or corrupt.
        if self._index == 0:
            raise VideoSourceError(f"{self.name}: no frame could be decoded (corrupt or empty video)")
        if self.frame_count and self._index < 0.9 * self.frame_count - 1:
            raise VideoSourceError(
                f"{self.name}: video ended after {self._index} of {self.frame_count} frames "
                "(truncated or corrupt file)"
            )

    def close(self) -> None:
        self._capture.release()


class FolderSource:
    """Image files of a folder in name order, as frames at a nominal frame rate."""

    def __init__(self, folder: Path, fps: float = 25.0) -> None:
        self.name = str(folder)
        self.live = False
        self.fps = fps
        self._paths = image_files(folder)
        if not self._paths:
            raise VideoSourceError(
                f"{folder}: folder has no image frames ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )

    @property
    def dropped(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self._paths):
            try:
                image = load_image(path)
            except ImageError as err:
                raise VideoSourceError(f"frame {i} of {self.name}: {err}") from err
            yield Frame(image, i, i / self.fps)

    def close(self) -> None:
        pass


class Looped:
    """Replays a finite source forever; indices and timestamps keep increasing across replays."""

    def __init__(self, first: VideoSource, reopen: Callable[[], VideoSource]) -> None:
        self.name, self.live, self.fps = first.name, first.live, first.fps
        self._current, self._reopen = first, reopen

    @property
    def dropped(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Frame]:
        index, offset = 0, 0.0
        while True:
            last = None
            for frame in self._current:
                last = Frame(frame.image, index, offset + frame.timestamp)
                index += 1
                yield last
            if last is None:
                return
            offset = last.timestamp + (1.0 / self.fps if self.fps else 0.04)
            self._current.close()
            self._current = self._reopen()

    def close(self) -> None:
        self._current.close()


_END = object()


class LiveReader:
    """Reads another source on a thread into a bounded queue; when full, the oldest frame is dropped.

    A file read this way is paced at its frame rate, so it behaves as a camera would.
    """

    def __init__(self, source: VideoSource, *, queue_size: int = 2) -> None:
        self.name = source.name
        self.live = True
        self.fps = source.fps
        self._source = source
        self._pace = not source.live and source.fps > 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._dropped = 0
        self._thread: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        return self._dropped

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    if isinstance(self._queue.get_nowait(), Frame):
                        self._dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        start = time.monotonic()
        try:
            for frame in self._source:
                if self._stop.is_set():
                    return
                if self._pace:
                    delay = start + frame.timestamp - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self._put(frame)
            self._put(_END)
        except BaseException as err:  # handed to the consumer, which re-raises it in its own thread
            self._put(err)

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"read {self.name}", daemon=True)
            self._thread.start()
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            # Unblock a reader stuck on a full queue and let it finish its current read; a read hung on
            # a dead network stream is abandoned (the thread is a daemon).
            deadline = time.monotonic() + timeout
            while self._thread.is_alive() and time.monotonic() < deadline:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    self._thread.join(timeout=0.05)
            if self._thread.is_alive():
                return
        self._source.close()
