"""Fusion: dlib's ResNet and FaceNet on the same face, their L2-normalised embeddings concatenated.

Each network gets its own chip (dlib's 5-point alignment at 150 px, FaceNet's crop at 160 px), cut side
by side from the image by :func:`faceprint.alignment.cut_chips`. With weights ``w`` and ``1 - w`` the
fused vector is ``[sqrt(w) a, sqrt(1 - w) b]``: unit length again, and its squared distance is the
weighted sum of the two networks' squared distances, so one threshold applies. A learned projection back
to 128-D was measured too (bench/bench_fusion_lfw.py) and is not used: see docs/models.md.
"""

from __future__ import annotations

import numpy as np

from faceprint.alignment import ChipSpec, chip_specs, split_chips
from faceprint.embedding.dlib_resnet import DlibResNetEmbedder
from faceprint.embedding.facenet import FaceNetEmbedder
from faceprint.errors import ModelError

# dlib-resnet's share of the squared distance; chosen on LFW View 1 pairsDevTrain (0.5-0.7 tie on accuracy,
# 0.7 has the best AUC): bench/bench_fusion_lfw.py view1.
WEIGHT = 0.7
DEFAULT_THRESHOLD = 0.6  # only until the thresholds table has this version (faceprint/thresholds.py)


class FusionEmbedder:
    """dlib-resnet + facenet, 256-D (each part with its default test-time views)."""

    name = "fusion"

    def __init__(self, weight: float = WEIGHT, flip: bool = True, threads: int | None = None) -> None:
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0.0 < weight < 1.0:
            raise ModelError(f"{self.name}: weight must be a number between 0 and 1, got {weight!r}")
        self.parts = (
            DlibResNetEmbedder(flip=flip, threads=threads),
            FaceNetEmbedder(flip=flip, threads=threads),
        )
        self.weight = float(weight)
        self._scale = np.sqrt([self.weight, 1.0 - self.weight]).astype(np.float32)
        self.dim = sum(p.dim for p in self.parts)
        self._specs = tuple(spec for part in self.parts for spec in chip_specs(part))
        self.input_size = max(s.size for s in self._specs)
        # the parts' versions name everything that changes their vectors
        self.version = "1:" + "+".join(f"{p.name}@{p.version}" for p in self.parts) + f":w{self.weight:g}"
        from faceprint.thresholds import builtin_calibration
        from faceprint.types import EmbedderKey

        found = builtin_calibration(EmbedderKey(self.name, self.version))
        self.threshold = found.threshold if found is not None else DEFAULT_THRESHOLD

    def template(self) -> np.ndarray:
        """dlib's template: where landmarks sit in the leftmost chip (used to place a missed face)."""
        return self.parts[0].template()

    def chip_specs(self) -> tuple[ChipSpec, ...]:
        return self._specs

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) side-by-side chips (alignment.cut_chips with :meth:`chip_specs`) -> (N, 256)."""
        chips = np.asarray(chips)
        height, width = self.input_size, sum(s.size for s in self._specs)
        if chips.ndim != 4 or chips.shape[1:] != (height, width, 3) or chips.dtype != np.uint8:
            raise ModelError(
                f"{self.name} takes (N, {height}, {width}, 3) uint8 side-by-side chips "
                f"(alignment.cut_chips with its chip_specs()), got {chips.shape} {chips.dtype}"
            )
        pieces = split_chips(chips, self._specs)
        vectors = [
            part.embed(np.ascontiguousarray(piece)) * scale
            for part, piece, scale in zip(self.parts, pieces, self._scale, strict=True)
        ]
        return np.concatenate(vectors, axis=1).astype(np.float32)

    def release(self) -> None:
        for part in self.parts:
            part.release()
