"""dlib's pretrained ResNet as a trainable embedder, with its early stages optionally frozen.

A frozen prefix is deterministic (dlib's affine layers are fixed scale-and-shift, there is no batch
norm), so the trainer can compute its output once per image and train only the rest: on a CPU this is
what makes fine-tuning affordable.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from faceprint.training.models import Architecture, Normalisation

# DlibResNet normalises its input itself (per-channel means, /256): pixels go in unchanged.
IDENTITY = Normalisation(mean=(0.0, 0.0, 0.0), scale=1.0)


class DlibEmbeddingNet(nn.Module):
    """DlibResNet with L2-normalised output (dlib's raw descriptors have a norm of about 1.4), split into
    ``frozen`` (the stem and the first ``freeze - 1`` stages) and ``trainable`` (the rest)."""

    def __init__(self, net: nn.Module, freeze: int = 0) -> None:
        from faceprint.embedding.dlib_net import STAGES

        super().__init__()
        self.net = net
        self.freeze = freeze
        self.split = sum(count for _, count, _ in STAGES[: max(0, freeze - 1)])  # blocks in the prefix
        for module in self._frozen_modules():
            module.requires_grad_(False)

    def _frozen_modules(self) -> list[nn.Module]:
        return ([self.net.conv, self.net.aff] if self.freeze else []) + list(self.net.blocks[: self.split])

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        return net.pool(F.relu(net.aff(net.conv((x - net.mean) / 256.0))))

    def frozen(self, x: torch.Tensor) -> torch.Tensor:
        if not self.freeze:
            return x
        return self.net.blocks[: self.split](self._stem(x))

    def trainable(self, x: torch.Tensor) -> torch.Tensor:
        if not self.freeze:
            x = self._stem(x)
        x = self.net.blocks[self.split :](x)
        return F.normalize(self.net.fc(x.mean(dim=(2, 3))), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainable(self.frozen(x))


def build_dlib_resnet(config: dict[str, Any], *, pretrained: bool) -> Architecture:
    """``config``: {"freeze": stages kept fixed from the input, the stem counting as one (0-6; 0: none)}."""
    from faceprint.embedding.dlib_net import INPUT_SIZE, DlibResNet, load_dlib_resnet

    net = load_dlib_resnet() if pretrained else DlibResNet()
    return Architecture(DlibEmbeddingNet(net, int(config.get("freeze", 0))), INPUT_SIZE, IDENTITY)
