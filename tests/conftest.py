"""Shared fixtures: the read-only data set beside the checkout, skipped with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not found at {path} (set FACEPRINT_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/data/faces: labelled stills, a multi-face photo, aligned crops, a crowd video."""
    return _need(DATA / "faces")


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """../shared/data/lfw/lfw-deepfunneled: LFW identity folders of 250x250 JPEGs."""
    return _need(DATA / "lfw" / "lfw-deepfunneled")


@pytest.fixture(scope="session")
def lfw_protocol() -> Path:
    """../shared/data/lfw/protocol: pairs.txt and the other official protocol files."""
    return _need(DATA / "lfw" / "protocol")


@pytest.fixture(scope="session")
def astronaut():
    """An RGB photo with one face that ships with scikit-image: usable on any machine."""
    from skimage import data

    return data.astronaut()
