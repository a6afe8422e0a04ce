"""dlib's pretrained ResNet as a trainable embedder, with its early stages optionally frozen."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from faceprint.training.models import Architecture, Normalisation

# DlibResNet normalises its input itself (per-channel means, /256): pixels go in unchanged.
IDENTITY = Normalisation(mean=(0.0, 0.0, 0.0), scale=1.0)


class DlibEmbeddingNet(nn.Module):
    """DlibResNet with L2-normalised output (dlib's raw descriptors have a norm of about 1.4)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


def stages(net: nn.Module) -> list[list[nn.Module]]:
    """The network's stages from the input: the stem, then one list of residual blocks per size."""
    from faceprint.embedding.dlib_resnet import STAGES

    out: list[list[nn.Module]] = [[net.conv, net.aff]]
    blocks = list(net.blocks)
    for _, count, _ in STAGES:
        out.append(blocks[:count])
        blocks = blocks[count:]
    return out


def build_dlib_resnet(config: dict[str, Any], *, pretrained: bool) -> Architecture:
    """``config``: {"freeze": number of stages kept fixed, counted from the input (0: train all)}."""
    from faceprint.embedding.dlib_resnet import INPUT_SIZE, DlibResNet, load_dlib_resnet

    net = load_dlib_resnet() if pretrained else DlibResNet()
    for stage in stages(net)[: int(config.get("freeze", 0))]:
        for module in stage:
            module.requires_grad_(False)
    return Architecture(DlibEmbeddingNet(net), INPUT_SIZE, IDENTITY)
