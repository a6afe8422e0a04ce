"""Face embedding: the ``Embedder`` protocol; implementations live one per module."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Embedder(Protocol):
    name: str
    version: str  # changes whenever the same name would give different vectors
    input_size: int  # side of the square RGB chip it takes
    dim: int
    threshold: float  # default same/different distance threshold on L2-normalised embeddings

    def template(self) -> np.ndarray:
        """(5, 2) float32 landmark positions in the chip, in the Detection landmark order."""
        ...

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) RGB uint8 chips -> (N, dim) float32 L2-normalised embeddings."""
        ...
