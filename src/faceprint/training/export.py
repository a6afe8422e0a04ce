"""Export a trained-model file to ONNX: pixels in, L2-normalised embeddings out."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from faceprint.embedding.trained import load_architecture
from faceprint.training.models import Architecture, to_input


class _WithPreprocessing(nn.Module):
    """The network with its pixel normalisation, so the ONNX model takes plain RGB values."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.net = arch.module
        self.normalisation = arch.normalisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(to_input(x, self.normalisation))


def export_onnx(model_path: Path, out: Path, opset: int = 17) -> Path:
    """Write ``out``: input "pixels" (N, 3, S, S) float32 RGB in [0, 255] at the network's input size
    (the aligned chip resized, as :func:`faceprint.training.dataset.resize_chips` does), output
    "embeddings" (N, 128) float32 L2-normalised."""
    arch, _ = load_architecture(model_path)
    wrapped = _WithPreprocessing(arch).eval()
    example = torch.zeros(2, 3, arch.input_size, arch.input_size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        wrapped,
        (example,),
        str(out),
        input_names=["pixels"],
        output_names=["embeddings"],
        dynamic_axes={"pixels": {0: "batch"}, "embeddings": {0: "batch"}},
        opset_version=opset,
        dynamo=False,  # the TorchScript exporter needs no onnxscript, which faceprint does not depend on
    )
    return out
