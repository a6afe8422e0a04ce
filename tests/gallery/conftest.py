"""Fixtures for gallery tests on real faces: one analyzer per session (models load once)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def analyzer():
    from faceprint.analyzer import FaceAnalyzer

    return FaceAnalyzer()


@pytest.fixture(scope="session")
def knn_dir(faces_dir: Path) -> Path:
    """face_recognition's knn example: train/NAME/*.jpg for 5 people and test photos."""
    return faces_dir / "face_recognition" / "examples" / "knn_examples"
