"""Fixtures for gallery tests on real faces. The pipeline is slow on CPU, so models load once per
session and the photos everybody needs are analysed once."""

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


@pytest.fixture(scope="session")
def enrolled(tmp_path_factory: pytest.TempPathFactory, knn_dir: Path, analyzer) -> Path:
    """A gallery file holding obama and biden, one training photo each. Tests that change a gallery
    work on a copy."""
    from faceprint.gallery import Gallery

    path = tmp_path_factory.mktemp("enrolled") / "g.sqlite3"
    with Gallery.open(path) as g:
        for name, photo in (("obama", "obama.jpg"), ("biden", "biden2.jpg")):
            result = g.enroll_image(name, knn_dir / "train" / name / photo, analyzer)
            assert result.status == "enrolled", result
    return path


@pytest.fixture()
def lfw_people(tmp_path: Path, lfw_dir: Path):
    """Build PEOPLE/NAME/*.jpg from LFW images (links, not copies): ``lfw_people({name: count})``."""

    def build(counts: dict[str, int]) -> Path:
        root = tmp_path / "people"
        for name, count in counts.items():
            (root / name).mkdir(parents=True)
            for image in sorted((lfw_dir / name).iterdir())[:count]:
                (root / name / image.name).symlink_to(image)
        return root

    return build
