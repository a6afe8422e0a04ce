"""Evaluation: verification and identification protocols, metrics, robustness slices, reports.

    from faceprint.evaluation.protocols import evaluate_lfw
    from faceprint.evaluation.report import write_verification_report
    result = evaluate_lfw("lfw/protocol/pairs.txt", "lfw/lfw-deepfunneled")
    write_verification_report(result, "lfw-report")

Importing this package is cheap; the modules load torch, scikit-learn and matplotlib only when used.
"""

from __future__ import annotations

from faceprint.errors import FaceprintError


class EvaluationError(FaceprintError):
    """An evaluation cannot be run as asked (bad pairs file, too few pairs for a FAR target, ...)."""
