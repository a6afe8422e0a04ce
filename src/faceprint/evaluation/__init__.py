"""Evaluation: verification and identification protocols, metrics, robustness slices, reports.

Importing this package is cheap; the heavy modules (runner, report) load only when used.
"""

from __future__ import annotations

from faceprint.errors import FaceprintError


class EvaluationError(FaceprintError):
    """An evaluation cannot be run as asked (bad pairs file, too few pairs for a FAR target, ...)."""
