"""faceprint: find, align, embed and recognise faces — offline, fast on CPU."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# PyTorch's OpenMP threads busy-wait between parallel regions by default: a little faster on an idle
# machine, several-fold slower when another process shares the cores (figures: docs/detection.md).
# faceprint's detector runs each op on one thread and parallelises itself, so it is unaffected; what
# still uses torch's threads (training, the PyTorch embedder runtime) sleeps instead, robust on shared
# machines. It takes effect only if torch is not imported yet (OpenMP reads it once); a user's own
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

if TYPE_CHECKING:
    from faceprint.analyzer import FaceAnalyzer
    from faceprint.errors import FaceprintError
    from faceprint.gallery import Gallery
    from faceprint.recognizer import Match, Recognizer
    from faceprint.types import UNKNOWN, Detection, Face

__all__ = [
    "UNKNOWN",
    "Detection",
    "Face",
    "FaceAnalyzer",
    "FaceprintError",
    "Gallery",
    "Match",
    "Recognizer",
    "__version__",
]

# The public API, imported on first attribute access so `import faceprint` stays free of torch and
# model work: FaceAnalyzer (detect, align, embed), Gallery (people and templates), Recognizer (enrol and
# identify against a gallery with one analyzer), Match (what identify answers).
_LAZY = {
    "FaceAnalyzer": "faceprint.analyzer",
    "FaceprintError": "faceprint.errors",
    "Gallery": "faceprint.gallery",
    "Match": "faceprint.recognizer",
    "Recognizer": "faceprint.recognizer",
    "Detection": "faceprint.types",
    "Face": "faceprint.types",
    "UNKNOWN": "faceprint.types",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceprint' has no attribute {name!r}")
