"""Metric primitives against cases worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from faceprint.evaluation import EvaluationError
from faceprint.evaluation.metrics import (
    accuracy_at,
    best_threshold,
    confusion_at,
    eer,
    kfold_accuracy,
    roc,
    threshold_at_far,
    verification_metrics,
)

# Case A: same-person distances 0.1 0.2 0.3 0.6, different-person 0.4 0.5 0.7 0.8.
# Accepting d <= t, over t = 0.1 ... 0.8:
#   TAR 1/4 2/4 3/4 3/4 3/4 1 1 1,   FAR 0 0 0 1/4 2/4 2/4 3/4 1.
A_D = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8])
A_S = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)


def test_roc_points_and_auc_case_a():
    curve = roc(A_D, A_S)
    np.testing.assert_allclose(curve.thresholds[1:], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert curve.thresholds[0] == -np.inf
    np.testing.assert_allclose(curve.tar, [0, 0.25, 0.5, 0.75, 0.75, 0.75, 1, 1, 1])
    np.testing.assert_allclose(curve.far, [0, 0, 0, 0, 0.25, 0.5, 0.5, 0.75, 1])
    # AUC = P(genuine closer than impostor): 0.1, 0.2, 0.3 beat all 4, 0.6 beats 2 -> 14/16.
    assert curve.auc == pytest.approx(14 / 16)
    assert (curve.n_same, curve.n_diff) == (4, 4)


def test_eer_exact_crossing_case_a():
    # FRR - FAR: 1/4 at t=0.3, 1/4 - 1/4 = 0 at t=0.4.
    e = eer(A_D, A_S)
    assert e.rate == pytest.approx(0.25)
    assert e.threshold == pytest.approx(0.4)


def test_eer_interpolated_between_points():
    # same 0.1 0.3 0.5, different 0.2 0.4. At t=0.2: FAR 1/2, FRR 2/3; at t=0.3: FAR 1/2, FRR 1/3.
    # FRR - FAR goes 1/6 -> -1/6, so the crossing is halfway: EER 1/2 at t = 0.25.
    e = eer([0.1, 0.3, 0.5, 0.2, 0.4], [1, 1, 1, 0, 0])
    assert e.rate == pytest.approx(0.5)
    assert e.threshold == pytest.approx(0.25)


def test_best_threshold_case_a():
    # Correct decisions: t=0.3 -> 3 + 4 = 7 of 8 (the maximum); midway to the next distance 0.4.
    choice = best_threshold(A_D, A_S)
    assert choice.accuracy == pytest.approx(7 / 8)
    assert choice.threshold == pytest.approx(0.35)
    assert accuracy_at(A_D, A_S, choice.threshold) == pytest.approx(7 / 8)


def test_best_threshold_rejecting_everything():
    # Every genuine pair is farther than every impostor: the best is to accept nothing (2 of 4 right).
    choice = best_threshold([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    assert choice.accuracy == pytest.approx(0.5)
    assert choice.threshold < 0.1


def test_tar_at_far_case_a():
    # FAR <= 1/4 allows one false accept: the largest such threshold is 0.4 (TAR 3/4, FAR 1/4).
    p = threshold_at_far(A_D, A_S, 0.25)
    assert (p.threshold, p.tar, p.far) == pytest.approx((0.4, 0.75, 0.25))
    # FAR <= 1/2: threshold 0.6 accepts every genuine pair and 2 of 4 impostors.
    p = threshold_at_far(A_D, A_S, 0.5)
    assert (p.threshold, p.tar, p.far) == pytest.approx((0.6, 1.0, 0.5))
    # FAR <= 0.3 still allows only one false accept of four.
    assert threshold_at_far(A_D, A_S, 0.3).far == pytest.approx(0.25)


def test_tar_at_far_counts_not_float_rates():
    # 1000 impostors: FAR 1e-3 allows exactly one false accept (3/3000-style rates never compared as floats).
    impostor = np.linspace(1.0, 2.0, 1000)  # spaced 0.001 apart
    genuine = np.array([0.5, 1.0005, 1.0015, 3.0])
    d = np.concatenate([genuine, impostor])
    s = np.r_[np.ones(4, bool), np.zeros(1000, bool)]
    p = threshold_at_far(d, s, 1e-3)
    # Only the impostor at 1.0 may pass: the last distance before the one at 1.001 is 1.0005.
    assert p.threshold == pytest.approx(1.0005)
    assert p.far == pytest.approx(1e-3)
    assert p.tar == pytest.approx(0.5)


def test_unsupported_far_target_is_refused():
    with pytest.raises(EvaluationError, match="at least 10 different-person pairs, only 4"):
        threshold_at_far(A_D, A_S, 0.1)
    m = verification_metrics(A_D, A_S, far_targets=(0.5, 0.1, 0.01))
    assert m.refused_far == (0.1, 0.01)
    assert [p.target_far for p in m.tar_at_far] == [0.5]


def test_confusion_matrix_case_a():
    # t=0.35: genuine 0.1 0.2 0.3 accepted, 0.6 rejected; no impostor below 0.4.
    c = confusion_at(A_D, A_S, 0.35)
    np.testing.assert_array_equal(c.as_array(), [[3, 1], [0, 4]])
    assert c.accuracy == pytest.approx(7 / 8)


def test_kfold_accuracy_two_folds():
    # Fold 1: same 0.2 0.5, different 0.6 0.3. Alone, its best threshold ties (3 of 4) at t=0.2 and
    # t=0.5; the smaller wins -> 0.25 (midway to 0.3). Case A at 0.25: 2 + 4 = 6 of 8 right.
    # Case A's threshold 0.35 on fold 1: accepts 0.2 and 0.3 -> 2 of 4 right.
    d = np.concatenate([A_D, [0.2, 0.5, 0.6, 0.3]])
    s = np.concatenate([A_S, [True, True, False, False]])
    folds = np.r_[np.zeros(8, int), np.ones(4, int)]
    f = kfold_accuracy(d, s, folds)
    assert f.thresholds == pytest.approx((0.25, 0.35))
    assert f.accuracies == pytest.approx((0.75, 0.5))
    assert f.mean == pytest.approx(0.625)
    assert f.std == pytest.approx(0.125)


def test_perfect_separation():
    m = verification_metrics([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0], far_targets=(0.5,))
    assert m.roc.auc == 1.0
    assert m.eer.rate == 0.0
    assert m.best.accuracy == 1.0
    assert 0.2 < m.best.threshold < 0.8
    assert m.tar_at_far[0].tar == 1.0


def test_bad_inputs_raise():
    with pytest.raises(EvaluationError, match="both same-person and different-person"):
        roc([0.1, 0.2], [1, 1])
    with pytest.raises(EvaluationError, match="3 distances but 2"):
        roc([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(EvaluationError, match="NaN"):
        eer([0.1, np.nan], [1, 0])


def test_best_threshold_matches_brute_force_on_random_data():
    rng = np.random.default_rng(1)
    d = np.r_[rng.normal(0.5, 0.15, 300), rng.normal(0.9, 0.15, 300)]
    s = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    brute = max(np.mean((d <= t) == s) for t in d)
    assert best_threshold(d, s).accuracy == pytest.approx(brute)
