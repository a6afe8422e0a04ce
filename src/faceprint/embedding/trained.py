"""Embedders trained with ``faceprint train``: one file holds the weights and everything needed to use them.

The file is a ``torch.save`` of ``{"state_dict": plain tensors, "meta": JSON text}`` and is read back with
``torch.load(weights_only=True)``, so opening a model file never runs code. ``meta`` carries the
architecture and its config, the chip size and alignment template the aligner must produce, the pixel
normalisation, and the distance threshold calibrated on the validation split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceprint.embedding.architectures import build_model, embed_images, resize_chips
from faceprint.errors import ModelError
from faceprint.models import Lazy, sha256_file, write_atomic

FORMAT = "faceprint-trained-embedder/1"


def save_model_file(path: Path, module: nn.Module, meta: dict[str, Any]) -> None:
    """Write a trained-model file atomically (a crash never leaves a half-written model)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    blob = {"state_dict": state, "meta": json.dumps({"format": FORMAT, **meta})}
    write_atomic(path, lambda tmp: torch.save(blob, tmp))


def read_model_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) of a trained-model file, with a clear error for anything else."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(blob["meta"])
        state = blob["state_dict"]
    except FileNotFoundError:
        raise ModelError(f"{path}: no such trained-model file") from None
    except Exception as err:
        raise ModelError(f"{path}: not a faceprint trained-model file ({err})") from None
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path}: unsupported model format {meta.get('format')!r}; expected {FORMAT}")
    return state, meta


def load_architecture(path: Path):
    """The network of a trained-model file with its weights, in eval mode, and the file's metadata."""
    state, meta = read_model_file(path)
    arch = build_model(meta["arch"], meta["arch_config"])
    try:
        arch.module.load_state_dict(state)
    except RuntimeError as err:
        raise ModelError(f"{path}: weights do not fit architecture {meta['arch']!r}: {err}") from None
    arch.module.eval()
    return arch, meta


class TrainedEmbedder:
    """An ``Embedder`` over a trained-model file (``FaceAnalyzer(embedder="path/to/model.fpm")``)."""

    def __init__(self, path: str | Path, threshold: float | None = None) -> None:
        self.path = Path(path)
        _, meta = read_model_file(self.path)
        self.name = meta.get("name") or f"trained:{self.path.stem}"
        self.version = sha256_file(self.path)[:16]  # the file is the model: its hash names the vectors
        self.input_size = int(meta["chip_size"])
        self.dim = int(meta["dim"])
        self.threshold = float(meta["threshold"] if threshold is None else threshold)
        self._template = np.asarray(meta["template"], np.float32)
        self._arch = Lazy(lambda: load_architecture(self.path)[0])

    def template(self) -> np.ndarray:
        return self._template.copy()

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (self.input_size, self.input_size, 3):
            raise ModelError(
                f"{self.path}: expects (N, {self.input_size}, {self.input_size}, 3) chips, got {chips.shape}"
            )
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        arch = self._arch.get()
        return embed_images(arch, resize_chips(chips.astype(np.uint8), arch.input_size))
