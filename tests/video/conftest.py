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


# People of LFW used by the end-to-end tests: the gallery holds ENROLLED (their first photos), the clips
# show other photos of them and of STRANGERS, who are not enrolled.
ENROLLED = ("Colin_Powell", "Charles_Moose", "Adrien_Brody")
STRANGERS = ("Gloria_Macapagal_Arroyo",)
GALLERY_PHOTOS = 3


@pytest.fixture(scope="module")
def analyzer():
    from faceprint.analyzer import FaceAnalyzer

    # Faces in the test clips are >= 70 px; a larger smallest-face size makes detection much cheaper.
    return FaceAnalyzer(detector_options={"min_face_size": 60})


@pytest.fixture(scope="module")
def lfw_gallery(tmp_path_factory, lfw_dir, analyzer):
    from faceprint.gallery import Gallery
    from faceprint.recognizer import Recognizer

    gallery = Gallery.open(tmp_path_factory.mktemp("gallery") / "people.sqlite3")
    recognizer = Recognizer(gallery, analyzer)
    for name in ENROLLED:
        for photo in sorted((lfw_dir / name).glob("*.jpg"))[:GALLERY_PHOTOS]:
            recognizer.enroll(name, photo)
    yield gallery
    gallery.close()


def clip_photos(lfw_dir: Path, names: tuple[str, ...], count: int = 4) -> dict[str, list[Path]]:
    """Photos the gallery has not seen, per person."""
    return {n: sorted((lfw_dir / n).glob("*.jpg"))[GALLERY_PHOTOS : GALLERY_PHOTOS + count] for n in names}
