"""FaceNet's pretrained Inception-ResNet-v1 as a trainable embedder (``faceprint train --arch facenet``),
with its early stages optionally frozen.

The batch norms keep the statistics FaceNet was trained with (they stay in eval mode even while the
rest trains): PK batches of 32 faces are too small and too few to re-estimate them, and a frozen
prefix is then deterministic, so the trainer computes its output once per image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from faceprint.training.models import Architecture, Normalisation

# InceptionResNetV1 standardises each image itself: pixels go in unchanged.
IDENTITY = Normalisation(mean=(0.0, 0.0, 0.0), scale=1.0)
STAGES = ("stem", "block35", "mixed_6a", "block17", "mixed_7a", "block8")


class FaceNetEmbeddingNet(nn.Module):
    """InceptionResNetV1 with L2-normalised output, split into ``frozen`` (the first ``freeze`` stages of
    :data:`STAGES`, 0-6) and ``trainable`` (the rest and the bottleneck)."""

    def __init__(self, net: nn.Module, freeze: int = 0) -> None:
        super().__init__()
        if not 0 <= freeze <= len(STAGES):
            from faceprint.errors import ModelError

            raise ModelError(f"facenet: freeze must be 0-{len(STAGES)} stages, got {freeze}")
        self.net = net
        self.freeze = freeze
        for name in STAGES[:freeze]:
            getattr(net, name).requires_grad_(False)

    def train(self, mode: bool = True) -> FaceNetEmbeddingNet:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.eval()
        return self

    def frozen(self, x: torch.Tensor) -> torch.Tensor:
        from faceprint.embedding.facenet import standardize

        if not self.freeze:
            return x
        x = standardize(x)
        for name in STAGES[: self.freeze]:
            x = getattr(self.net, name)(x)
        return x

    def trainable(self, x: torch.Tensor) -> torch.Tensor:
        from faceprint.embedding.facenet import standardize

        if not self.freeze:
            x = standardize(x)
        for name in STAGES[self.freeze :]:
            x = getattr(self.net, name)(x)
        net = self.net
        return F.normalize(net.bottleneck_bn(net.bottleneck(x.mean(dim=(2, 3)))), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainable(self.frozen(x))


def build_facenet(config: dict[str, Any], *, pretrained: bool) -> Architecture:
    """``config``: {"freeze": stages kept fixed from the input (0-6; 0: none)}."""
    from faceprint.embedding.facenet import INPUT_SIZE, InceptionResNetV1, load_facenet

    net = load_facenet() if pretrained else InceptionResNetV1()
    return Architecture(FaceNetEmbeddingNet(net, int(config.get("freeze", 0))), INPUT_SIZE, IDENTITY)
