"""Fitting a threshold and a confidence calibration from labelled pairs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from faceprint.evaluation.calibration import fit_calibration


def test_calibration_threshold_at_far_and_confidence() -> None:
    rng = np.random.default_rng(11)
    same = rng.normal(0.30, 0.05, 5000)
    diff = rng.normal(0.60, 0.07, 20000)
    cal = fit_calibration(
        np.r_[same, diff], np.r_[np.ones(5000, bool), np.zeros(20000, bool)], embedder="x", target_far=0.01
    )
    assert np.mean(diff <= cal.threshold) <= 0.01 < np.mean(diff <= cal.threshold + 0.01)
    assert cal.tar == pytest.approx(np.mean(same <= cal.threshold))
    # The confidence agrees with the decision: 0.5 exactly at the threshold (or one passed in).
    assert cal.confidence(cal.threshold) == pytest.approx(0.5)
    assert cal.confidence(0.5, 0.5) == pytest.approx(0.5)
    # Its steepness is the balanced logistic's: two normals with spreads 0.05 and 0.07 give a slope of
    # the order of (mean gap) / (variance) ~ 0.3 / 0.0037 ~ 80 (a logistic only approximates the ratio).
    assert 30 < cal.slope < 150
    grid = cal.confidence(np.linspace(0, 2, 50))
    assert np.all(np.diff(grid) < 0) and grid[0] > 0.99 and grid[-1] < 0.01
    assert cal.confidence(float("inf")) == 0.0


def test_expected_calibration_error_of_a_calibrated_and_an_overconfident_forecast() -> None:
    from faceprint.evaluation.calibration import expected_calibration_error

    rng = np.random.default_rng(12)
    p = rng.uniform(0, 1, 200_000)
    outcome = rng.uniform(0, 1, p.size) < p
    # Calibrated: only sampling noise (~1/sqrt(20k) per bin).
    assert expected_calibration_error(p, outcome) < 0.01
    # Pushed toward 0 and 1: off by ~0.1 on average.
    assert expected_calibration_error(np.clip(1.4 * (p - 0.5) + 0.5, 0, 1), outcome) > 0.07


def test_stranger_model_matches_simulated_strangers() -> None:
    """On synthetic embeddings (random unit vectors: independent distances, as the model assumes) the
    fitted model's threshold holds the FPIR of fresh galleries at the target."""
    from faceprint.evaluation.calibration import fit_tail, impostor_cdf
    from faceprint.thresholds import StrangerModel

    rng = np.random.default_rng(13)
    dim = 24  # low dimension: distances spread enough for a measurable tail with 4k vectors
    x = rng.standard_normal((4000, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    grid, cdf = impostor_cdf(x, np.arange(4000).astype(str))
    model = StrangerModel(fit_tail(grid, cdf), 0.0, 0.0, 1.0, "synthetic")
    for n in (10, 100):
        limit = model.threshold({1: n}, 0.05)
        gallery = rng.standard_normal((200, n, dim)).astype(np.float32)
        gallery /= np.linalg.norm(gallery, axis=2, keepdims=True)
        probe = rng.standard_normal((200, dim)).astype(np.float32)
        probe /= np.linalg.norm(probe, axis=1, keepdims=True)
        best = np.sqrt(np.clip(2 - 2 * np.einsum("gnd,gd->gn", gallery, probe), 0, None)).min(axis=1)
        # 200 galleries: the binomial spread of a 5% rate is ~1.5 points; 3 sigma allowed
        assert abs(np.mean(best <= limit) - 0.05) < 0.045


@pytest.mark.parametrize(
    "key",
    [
        ("dlib-resnet", "2+flip"),
        ("dlib-resnet", "2"),
        ("facenet", "1+margin+flip"),
        ("fusion", "1:dlib-resnet@2+flip+facenet@1+template+flip:w0.7"),
        ("fusion", "1:dlib-resnet@2+facenet@1+template:w0.7"),
    ],
)
def test_builtin_stranger_models_give_thresholds_that_fall_with_gallery_size(key: tuple[str, str]) -> None:
    """Both shapes of fitted tail (dlib-resnet's log-FAR is concave in distance, FaceNet's convex) give a
    threshold whose modelled FPIR is the target, falling as people are added."""
    from faceprint.thresholds import BUILTIN
    from faceprint.types import EmbedderKey

    model = BUILTIN[EmbedderKey(*key)].strangers
    limits = [model.threshold({1: n}, 0.01) for n in (1, 10, 1000, 100_000)]
    assert all(a > b for a, b in itertools.pairwise(limits))
    for n, limit in zip((1, 10, 1000, 100_000), limits, strict=True):
        assert model.fpir(limit, {1: n}) == pytest.approx(0.01, rel=1e-6)  # bisection to ~1e-15
    # The built-in 1:1 threshold is the FAR 0.1% point of the same tail (fitted on the same pairs; the
    # quadratic lands within ~15% of the measured rate for dlib-resnet, 31% for fusion's one view).
    assert model.pair_far(BUILTIN[EmbedderKey(*key)].threshold) == pytest.approx(1e-3, rel=0.35)
