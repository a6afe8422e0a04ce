"""Trainable embedding networks and the registry that rebuilds them from a trained-model file.

Every architecture maps a float tensor (N, 3, S, S) of *normalised* RGB pixels to (N, 128) L2-normalised
embeddings; the normalisation (mean, scale) travels in the model file's metadata with the architecture's
name and config, so a file is rebuilt with ``build_model(meta["arch"], meta["arch_config"])``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        from faceprint.training.dlib_finetune import build_dlib_resnet

        return build_dlib_resnet(config, pretrained=pretrained)
    if arch == "facenet":
        from faceprint.training.facenet_finetune import build_facenet

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
