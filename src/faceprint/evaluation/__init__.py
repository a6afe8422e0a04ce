"""Evaluation: verification and identification protocols, metrics, robustness slices, reports.

    from faceprint.evaluation import evaluate_lfw, write_verification_report
    result = evaluate_lfw("lfw/protocol/pairs.txt", "lfw/lfw-deepfunneled")
    write_verification_report(result, "lfw-report")

Importing this package is cheap: the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from faceprint.errors import FaceprintError

_LAZY = {
    "evaluate_pairs": "protocols",
    "evaluate_lfw": "protocols",
    "evaluate_folder": "protocols",
    "evaluate_identification": "protocols",
    "compare_pairs": "protocols",
    "pair_metrics": "protocols",
    "PipelineConfig": "runner",
    "read_lfw_pairs": "pairs",
    "folder_pairs": "pairs",
    "write_verification_report": "report",
    "write_identification_report": "report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"faceprint.evaluation.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'faceprint.evaluation' has no attribute {name!r}")


class EvaluationError(FaceprintError):
    """An evaluation cannot be run as asked (bad pairs file, too few pairs for a FAR target, ...)."""
