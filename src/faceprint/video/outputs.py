"""What a video run produces: an annotated video file, an on-screen window, JSON-lines events, face crops."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from faceprint.errors import FaceprintError

if TYPE_CHECKING:
    from faceprint.video.sources import Frame


class VideoOutputError(FaceprintError):
    """An output (video file, events file, crop folder, window) could not be written."""


@dataclass(frozen=True)
class TrackLabel:
    """One box to draw: where, who, how sure, which track; ``pending`` while evidence is still gathered."""

    box: tuple[float, float, float, float]
    track_id: int
    name: str
    confidence: float
    known: bool
    pending: bool


_GREEN, _RED, _AMBER = (40, 200, 60), (230, 50, 50), (240, 180, 0)


def annotate(frame: np.ndarray, labels: Sequence[TrackLabel]) -> np.ndarray:
    """A copy of an RGB frame with each track's box and ``#id name confidence``."""
    canvas = frame.copy()
    thickness = max(1, round(max(frame.shape[:2]) / 500))
    scale = max(0.4, thickness * 0.45)
    for label in labels:
        colour = _AMBER if label.pending else (_GREEN if label.known else _RED)
        x1, y1, x2, y2 = (round(v) for v in label.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = f"#{label.track_id} ..." if label.pending else f"#{label.track_id} {label.name}"
        if not label.pending:
            text += f" {label.confidence:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y1 - th - base - 2)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(
            canvas, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness
        )
    return canvas


class VideoFileWriter:
    """MPEG-4 (mp4v) writer that opens on the first frame, when the frame size is known."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps if fps > 0 else 25.0
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0
        if not self.path.parent.exists():
            raise VideoOutputError(f"{self.path}: folder {self.path.parent} does not exist")

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise VideoOutputError(f"{self.path}: cannot write a video here (mp4v codec, {w}x{h})")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class Window:
    """An OpenCV window; ``available()`` says whether a display and a GUI-enabled OpenCV exist."""

    def __init__(self, title: str = "faceprint") -> None:
        self.title = title
        self.closed = False

    @staticmethod
    def available() -> bool:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.name == "nt"):
            return False
        try:
            cv2.namedWindow("faceprint-probe", cv2.WINDOW_NORMAL)
            cv2.destroyWindow("faceprint-probe")
        except cv2.error:  # opencv-python-headless has no GUI backend
            return False
        return True

    def show(self, frame: np.ndarray) -> None:
        cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        # q or Esc closes the window and ends the run, like Ctrl-C.
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.closed = True

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class EventLog:
    """JSON-lines events, one object per line, flushed as written so a killed run loses nothing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._file = self.path.open("w", encoding="utf-8", buffering=1)
        except OSError as err:
            raise VideoOutputError(f"{self.path}: cannot write events ({err.strerror or err})") from err

    def write(self, event: str, **fields: Any) -> None:
        self._file.write(json.dumps({"event": event, **fields}) + "\n")

    def close(self) -> None:
        self._file.close()


def save_crop(folder: Path, name: str, crop: np.ndarray) -> Path:
    """Write an RGB face crop as JPEG into ``folder``; returns its path."""
    path = Path(folder) / name
    if not cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
        raise VideoOutputError(f"{path}: cannot write the face crop")
    return path


def crop_face(frame: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.25) -> np.ndarray:
    """A copy of the face box widened by ``margin`` on each side, clipped to the frame."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    xa, ya = max(0, int(x1 - mx)), max(0, int(y1 - my))
    xb, yb = min(w, int(x2 + mx)), min(h, int(y2 + my))
    return frame[ya:yb, xa:xb].copy()


class OutputSink:
    """Where one run's results go: the events file, the face crops folder, the annotated video file, the
    window and the caller's ``on_frame``, each optional; opened in that order, closed by :meth:`close`."""

    def __init__(
        self,
        title: str,
        fps: float,
        video_out: Path | None,
        events_out: Path | None,
        crops_dir: Path | None,
        show: bool,
        on_frame: Callable[[Frame, list[TrackLabel]], None] | None,
    ) -> None:
        self.on_frame = on_frame
        self.on_event: Callable[[dict[str, Any]], None] | None = None  # the caller's, e.g. a service's
        self.crops_dir = crops_dir
        if crops_dir is not None:
            Path(crops_dir).mkdir(parents=True, exist_ok=True)
        self.writer = VideoFileWriter(video_out, fps) if video_out is not None else None
        self.events = EventLog(events_out) if events_out is not None else None
        self.window = Window(title) if show and Window.available() else None

    @property
    def draws(self) -> bool:
        """Whether frames are drawn at all (a video file or a window wants them)."""
        return self.writer is not None or self.window is not None

    @property
    def closed_by_user(self) -> bool:
        return self.window is not None and self.window.closed

    def event(self, event: str, frame: Frame | None, **fields: Any) -> None:
        """Log an event, stamped with the frame's index and time when there is a frame."""
        where = {"frame": frame.index, "time": round(frame.timestamp, 3)} if frame is not None else {}
        if self.events is not None:
            self.events.write(event, **where, **fields)
        if self.on_event is not None:
            self.on_event({"event": event, **where, **fields})

    def crop(self, name: str, crop: np.ndarray | None) -> str | None:
        """Save a face crop when crops are asked for; its path, or None."""
        if self.crops_dir is None or crop is None or not crop.size:
            return None
        return str(save_crop(self.crops_dir, name, crop))

    def show(self, canvas: np.ndarray) -> None:
        """An annotated frame to the video file and the window."""
        if self.writer is not None:
            self.writer.write(canvas)
        if self.window is not None:
            self.window.show(canvas)

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
        if self.writer is not None:
            self.writer.close()
        if self.window is not None:
            self.window.close()
