"""Helpers for the video tests: small clips written with OpenCV into tmp_path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Write RGB frames as an mp4v clip."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture
def grey_clip(tmp_path: Path):
    """A factory of plain clips whose frame i has grey level 5*i mod 250 (so order can be checked)."""

    def make(n: int = 20, size: tuple[int, int] = (64, 48), name: str = "clip.mp4") -> Path:
        w, h = size
        return write_video(tmp_path / name, [np.full((h, w, 3), (5 * i) % 250, np.uint8) for i in range(n)])

    return make
