"""The fusion embedder: both networks on their own chips of the same face, weighted and concatenated."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from faceprint import FaceAnalyzer
from faceprint.alignment import split_chips
from faceprint.embedding.fusion import FusionEmbedder
from faceprint.errors import ModelError


@pytest.fixture(scope="module")
def fusion() -> FaceAnalyzer:
    return FaceAnalyzer(embedder="fusion")


def test_fused_vector_is_the_weighted_parts(fusion: FaceAnalyzer, astronaut: np.ndarray) -> None:
    face = fusion.analyze(astronaut, with_chips=True)[0]
    embedder = fusion.embedder
    assert face.embedding.shape == (256,) and face.embedding.dtype == np.float32
    assert abs(np.linalg.norm(face.embedding) - 1) < 1e-5
    # The side-by-side chip holds each network's own chip; each half is that network's vector, scaled.
    dlib_chip, facenet_chip = split_chips(face.chip[None], embedder.chip_specs())
    assert dlib_chip.shape[1:] == (150, 150, 3) and facenet_chip.shape[1:] == (160, 160, 3)
    alone = [
        FaceAnalyzer(embedder=name).analyze(astronaut)[0].embedding for name in ("dlib-resnet", "facenet")
    ]
    w = embedder.weight
    # ONNX Runtime runs the same graphs on the same chips: equal up to float32 rounding of the scaling.
    assert np.abs(face.embedding[:128] - np.sqrt(w) * alone[0]).max() < 1e-6
    assert np.abs(face.embedding[128:] - np.sqrt(1 - w) * alone[1]).max() < 1e-6


def test_squared_distance_is_the_weighted_sum(fusion: FaceAnalyzer, faces_dir: Path) -> None:
    examples = faces_dir / "face_recognition" / "examples"
    a, b = (fusion.analyze_one(examples / name) for name in ("obama.jpg", "biden.jpg"))
    d = np.linalg.norm(a.embedding - b.embedding)
    d1 = np.linalg.norm(a.embedding[:128] - b.embedding[:128]) / np.sqrt(fusion.embedder.weight)
    d2 = np.linalg.norm(a.embedding[128:] - b.embedding[128:]) / np.sqrt(1 - fusion.embedder.weight)
    w = fusion.embedder.weight
    assert d**2 == pytest.approx(w * d1**2 + (1 - w) * d2**2, rel=1e-5)
    assert d > fusion.embedder.threshold  # two different people


def test_bad_options_and_chips_are_clear_errors() -> None:
    with pytest.raises(ModelError, match="weight"):
        FusionEmbedder(weight=1.5)
    with pytest.raises(ModelError, match="side-by-side"):
        FusionEmbedder().embed(np.zeros((1, 150, 150, 3), np.uint8))


def test_version_names_both_parts() -> None:
    version = FusionEmbedder().version
    assert "dlib-resnet@" in version and "facenet@" in version
    assert FusionEmbedder(weight=0.4).version != version


def test_default_fusion_and_facenet_have_their_stranger_models() -> None:
    """The default versions are in the thresholds table (fitted on LFW View 1's training people), so a
    gallery of either holds its FPIR target instead of identifying at a borrowed 1:1 threshold."""
    from faceprint.embedding.facenet import FaceNetEmbedder
    from faceprint.thresholds import builtin_calibration
    from faceprint.types import EmbedderKey

    for embedder in (FusionEmbedder(), FaceNetEmbedder()):
        calibration = builtin_calibration(EmbedderKey.of(embedder))
        assert calibration is not None and calibration.strangers is not None, embedder.version
        assert embedder.threshold == calibration.threshold
        # more people, stricter threshold; every threshold within the range of unit-vector distances
        sizes = [calibration.strangers.threshold({1: n}) for n in (1, 10, 100, 1000)]
        assert all(0 < b < a < 2 for a, b in itertools.pairwise(sizes))
