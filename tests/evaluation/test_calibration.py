"""Fitting a threshold and a confidence calibration from labelled pairs."""

from __future__ import annotations

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
    # Balanced classes with equal spread would put P = 0.5 midway; here the wider different-person
    # distribution pulls it a little toward the same-person side of 0.45.
    assert 0.40 < cal.midpoint < 0.47
    assert cal.confidence(cal.midpoint) == pytest.approx(0.5)
    grid = cal.confidence(np.linspace(0, 2, 50))
    assert np.all(np.diff(grid) < 0) and grid[0] > 0.99 and grid[-1] < 0.01
    assert cal.confidence(float("inf")) == 0.0
