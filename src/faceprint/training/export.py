"""Export to ONNX: a trained-model file (pixels in, L2-normalised embeddings out), or any image module
(the trainer runs a frozen prefix through ONNX Runtime, several times faster than eager PyTorch on CPU)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceprint.embedding.architectures import Architecture, to_input
from faceprint.embedding.trained import load_architecture
from faceprint.models import export_onnx as export_onnx_file
from faceprint.models import onnx_session


class _Pixels(nn.Module):
    """``fn`` of an architecture applied after its pixel normalisation, so the input is plain RGB."""

    def __init__(self, arch: Architecture, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.net = arch.module
        self.normalisation = arch.normalisation
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(to_input(x, self.normalisation))


def export_module(arch: Architecture, out: Path, fn: Callable | None = None, opset: int = 17) -> Path:
    """Write ``fn`` (default: the whole network) as ONNX: input "pixels" (N, 3, S, S) float32 RGB in
    [0, 255] at the network's input size, output "embeddings" (or the prefix's features)."""
    wrapped = _Pixels(arch, fn or arch.module).eval()
    example = torch.zeros(2, 3, arch.input_size, arch.input_size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    axes = {"pixels": {0: "batch"}, "embeddings": {0: "batch"}}
    names = {"input_names": ["pixels"], "output_names": ["embeddings"]}
    return export_onnx_file(wrapped, example, out, **names, dynamic_axes=axes, opset=opset)


def export_onnx(model_path: Path, out: Path) -> Path:
    """Export a trained-model file; its input is the aligned chip resized to the network size (as
    :func:`faceprint.embedding.architectures.resize_chips` does), in (N, 3, S, S) float32 RGB."""
    arch, _ = load_architecture(model_path)
    return export_module(arch, out)


def onnx_runner(arch: Architecture, fn: Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` of ``arch`` (after pixel normalisation) as an ONNX Runtime session on the CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        path = export_module(arch, Path(tmp) / "prefix.onnx", fn)
        session = onnx_session(lambda rebuild=False: path)

    def run(pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"pixels": pixels.numpy().astype(np.float32)})[0])

    return run
