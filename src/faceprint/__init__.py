"""faceprint: find, align, embed and recognise faces — offline, fast on CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from faceprint.analyzer import FaceAnalyzer
    from faceprint.errors import FaceprintError
    from faceprint.types import Detection, Face

__all__ = ["Detection", "Face", "FaceAnalyzer", "FaceprintError", "__version__"]

# Imported on first attribute access so `import faceprint` stays free of torch and model work.
_LAZY = {
    "FaceAnalyzer": "faceprint.analyzer",
    "FaceprintError": "faceprint.errors",
    "Detection": "faceprint.types",
    "Face": "faceprint.types",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceprint' has no attribute {name!r}")
