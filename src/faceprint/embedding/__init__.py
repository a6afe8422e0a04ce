"""Face embedding: the ``Embedder`` protocol; implementations live one per module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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


def onnx_chip_runner(export: Callable[..., Path], threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """(N, S, S, 3) uint8 chips -> the network's output, through an ONNX Runtime session on the file
    ``export()`` returns (a network exported with its input named "chips", NCHW float32)."""
    from faceprint.models import onnx_session

    session = onnx_session(export, threads)

    def run(batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        return session.run(None, {"chips": x})[0]

    return run
