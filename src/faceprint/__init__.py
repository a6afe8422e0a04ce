"""faceprint: find, align, embed and recognise faces — offline, fast on CPU."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# PyTorch's OpenMP threads busy-wait between parallel regions by default. When another process shares
# the cores, a 2-thread detection then waited on a descheduled peer: measured 45 ms -> 713 ms per
# 640x480 frame on a loaded 2-core machine, against no loss when idle. Sleeping waits avoid that. It
# takes effect only if torch is not imported yet (OpenMP reads it once); a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
