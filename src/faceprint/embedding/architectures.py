"""Trainable embedding networks and the registry that rebuilds them from a trained-model file.

They live on the embedding side because a trained model runs at inference (``TrainedEmbedder``):
runtime code never imports :mod:`faceprint.training`, which only builds and fits these networks.
Every architecture maps a float tensor (N, 3, S, S) of *normalised* RGB pixels to (N, 128) L2-normalised
embeddings; the normalisation (mean, scale) travels in the model file's metadata with the architecture's
name and config, so a file is rebuilt with ``build_model(meta["arch"], meta["arch_config"])``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceprint.errors import ModelError


@dataclass(frozen=True)
class Normalisation:
    """Pixel preprocessing of an architecture: ``(rgb - mean) / scale``."""

    mean: tuple[float, float, float]
    scale: float


class SeedCNN(nn.Module):
    """The seed's small FaceNet-style CNN: conv+BatchNorm+ReLU+max-pool blocks, a dense layer with dropout,
    then a 128-D L2-normalised projection."""

    def __init__(
        self,
        input_size: int = 64,
        channels: tuple[int, ...] = (32, 64, 128, 256),
        hidden: int = 256,
        dim: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in channels:
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        side = input_size // 2 ** len(channels)
        if side < 1:
            raise ModelError(f"seed-cnn: input size {input_size} is too small for {len(channels)} poolings")
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * side * side, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(x)), dim=1)


SEED_CNN_NORM = Normalisation(mean=(127.5, 127.5, 127.5), scale=128.0)
# DlibResNet (per-channel means, /256) and InceptionResNetV1 (per-image standardisation) normalise their
# input themselves: pixels go in unchanged.
UNCHANGED = Normalisation(mean=(0.0, 0.0, 0.0), scale=1.0)


@dataclass(frozen=True)
class Architecture:
    """A built network with what is needed to feed it."""

    module: nn.Module
    input_size: int  # side of the square input the network takes
    normalisation: Normalisation


def build_model(arch: str, config: dict[str, Any], *, pretrained: bool = False) -> Architecture:
    """Build architecture ``arch`` ("seed-cnn", "dlib-resnet" or "facenet") from its JSON-able ``config``.

    ``pretrained`` loads the published weights where the architecture has them (dlib-resnet, facenet); a
    trained model file overwrites the weights afterwards anyway.
    """
    if arch == "seed-cnn":
        cfg = dict(config)
        if "channels" in cfg:
            cfg["channels"] = tuple(cfg["channels"])
        net = SeedCNN(**cfg)
        return Architecture(net, int(cfg.get("input_size", 64)), SEED_CNN_NORM)
    if arch == "dlib-resnet":
        return build_dlib_resnet(config, pretrained=pretrained)
    if arch == "facenet":
        return build_facenet(config, pretrained=pretrained)
    raise ModelError(f"unknown architecture {arch!r}; known: seed-cnn, dlib-resnet, facenet")


def to_input(images: torch.Tensor, norm: Normalisation) -> torch.Tensor:
    """(N, 3, S, S) float RGB in [0, 255] -> the network's normalised input."""
    mean = torch.tensor(norm.mean, dtype=images.dtype, device=images.device)[None, :, None, None]
    return (images - mean) / norm.scale


def nchw(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB -> (N, 3, S, S) float32 tensor in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()


@torch.no_grad()
def embed_images(arch: Architecture, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """(N, S, S, 3) uint8 chips already at ``arch.input_size`` -> (N, D) float32 L2-normalised embeddings."""
    net = arch.module
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    out = [
        net(to_input(nchw(images[i : i + batch_size], device), arch.normalisation)).cpu().numpy()
        for i in range(0, len(images), batch_size)
    ]
    net.train(was_training)
    return np.concatenate(out).astype(np.float32)


def resize_chips(chips: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, size, size, 3) uint8 with area interpolation (identity when S == size).

    Training and the trained embedder both go through this, so a network trained on resized chips sees
    the same pixels at inference."""
    if chips.shape[1] == size:
        return chips
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in chips])


# dlib's pretrained ResNet as a trainable embedder, with its early stages optionally frozen. A frozen
# prefix is deterministic (dlib's affine layers are fixed scale-and-shift, there is no batch norm), so the
# trainer can compute its output once per image and train only the rest: on a CPU this is what makes
# fine-tuning affordable.


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
    return Architecture(DlibEmbeddingNet(net, int(config.get("freeze", 0))), INPUT_SIZE, UNCHANGED)


# FaceNet's pretrained Inception-ResNet-v1 as a trainable embedder (``faceprint train --arch facenet``),
# with its early stages optionally frozen. The batch norms keep the statistics FaceNet was trained with
# (they stay in eval mode even while the rest trains): PK batches of 32 faces are too small and too few
# to re-estimate them, and a frozen prefix is then deterministic, so the trainer computes its output once
# per image.
FACENET_STAGES = ("stem", "block35", "mixed_6a", "block17", "mixed_7a", "block8")


class FaceNetEmbeddingNet(nn.Module):
    """InceptionResNetV1 with L2-normalised output, split into ``frozen`` (the first ``freeze`` stages of
    :data:`FACENET_STAGES`, 0-6) and ``trainable`` (the rest and the bottleneck)."""

    def __init__(self, net: nn.Module, freeze: int = 0) -> None:
        super().__init__()
        if not 0 <= freeze <= len(FACENET_STAGES):
            raise ModelError(f"facenet: freeze must be 0-{len(FACENET_STAGES)} stages, got {freeze}")
        self.net = net
        self.freeze = freeze
        for name in FACENET_STAGES[:freeze]:
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
        for name in FACENET_STAGES[: self.freeze]:
            x = getattr(self.net, name)(x)
        return x

    def trainable(self, x: torch.Tensor) -> torch.Tensor:
        from faceprint.embedding.facenet import standardize

        if not self.freeze:
            x = standardize(x)
        for name in FACENET_STAGES[self.freeze :]:
            x = getattr(self.net, name)(x)
        net = self.net
        return F.normalize(net.bottleneck_bn(net.bottleneck(x.mean(dim=(2, 3)))), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainable(self.frozen(x))


def build_facenet(config: dict[str, Any], *, pretrained: bool) -> Architecture:
    """``config``: {"freeze": stages kept fixed from the input (0-6; 0: none)}."""
    from faceprint.embedding.facenet import INPUT_SIZE, InceptionResNetV1, load_facenet

    net = load_facenet() if pretrained else InceptionResNetV1()
    return Architecture(FaceNetEmbeddingNet(net, int(config.get("freeze", 0))), INPUT_SIZE, UNCHANGED)
