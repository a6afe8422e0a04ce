"""Settings of the video loop, in a module of their own so the CLI can show defaults without importing
OpenCV and SciPy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WatchOptions:
    """Knobs of the loop. ``detect_every`` = 3 is the knee of bench/bench_video.py's interval sweep on 2
    cores (CPU ms/frame at 640x360: 40 every frame, 23 every 2nd, 17 every 3rd, 16 every 5th)."""

    detect_every: int = 3  # run the detector on every Nth frame; the tracker predicts in between
    detect_width: int = 640  # wider frames are downscaled to this width for detection only (0: never)
    embed_interval: float = 1.0  # seconds between routine re-embeddings of a track
    better_factor: float = 1.3  # re-embed early when a face's quality beats the track's best by this factor
    min_quality: float = 0.05  # faces below this quality (tiny, blurred, profile) are tracked, not embedded
    min_samples: int = 2  # embeddings a track needs before it gets a name
    max_samples: int = 8  # best embeddings kept per track
    track_timeout: float = 0.5  # seconds without a matching detection before a track ends
    cut_threshold: float = 35.0  # mean grey-level change of a thumbnail that marks a scene cut
    # A new embedding this far from its track's mean is a different face (an ID swap or a cut the frame
    # difference missed); default: 1.3 x the recognizer's threshold, clear of pose changes of one face.
    split_distance: float | None = None
