"""Real-time recognition on video: sources, tracking, per-track identity, outputs, enrolment from video and
clusters of unknown faces. Entry point: :class:`VideoRecognizer` over a source from :func:`open_source`."""

from faceprint.video.pipeline import RunSummary, VideoRecognizer, WatchOptions
from faceprint.video.sources import Frame, VideoSource, VideoSourceError, open_source

__all__ = [
    "Frame",
    "RunSummary",
    "VideoRecognizer",
    "VideoSource",
    "VideoSourceError",
    "WatchOptions",
    "open_source",
]
