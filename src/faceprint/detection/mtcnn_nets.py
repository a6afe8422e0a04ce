"""The three MTCNN architectures in PyTorch: the one definition of each, and what the detector runs.

Layer order, kernel sizes and pooling follow the Keras nets of the ``mtcnn`` package (its "same" pools are
``ceil_mode=True``). Inputs are (N, H, W, 3) float32 RGB pixel values (0-255, resampled, so not integers);
the training normalisation is folded into the first conv.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _pixels_in(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """First conv on (N, H, W, 3) float32 RGB pixel values. The training normalisation (x - 127.5) / 128
    is folded into its weights (exact: the conv has no padding), so no pass over the image is spent on it."""
    w = conv.weight * (1.0 / 128.0)
    b = conv.bias - 127.5 * w.sum(dim=(1, 2, 3))
    return F.conv2d(x.permute(0, 3, 1, 2), w, b)


def _face_logit(logits: torch.Tensor) -> torch.Tensor:
    """Face logit minus non-face logit; P(face) = sigmoid of it (the two-way softmax). The graphs return
    the logit so the detector computes the probability in float32 NumPy, rounding near 1.0 the way a
    softmax does (ties at 1.0 decide the NMS order)."""
    return logits[:, 1] - logits[:, 0]


def _max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pool, stride 2, ceil mode (a last odd row or column pools alone), as maxima of strided
    views: 3x faster than torch's max_pool2d on P-Net's 10-channel channels-last maps here."""
    h, w = x.shape[2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2), value=float("-inf"))
    x = torch.maximum(x[..., 0::2], x[..., 1::2])
    return torch.maximum(x[..., 0::2, :], x[..., 1::2, :])


class PNet(nn.Module):
    """Fully convolutional proposal net: (N, H, W, 3) float32 -> face logit (N, H', W'), box offsets
    (N, H', W', 4). Output cell (i, j) sees the 12x12 window at (2j, 2i)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.box, self.cls = nn.Conv2d(32, 4, 1), nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _max_pool_2x2(self.prelu1(_pixels_in(self.conv1, x)))  # Keras "same" pooling
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        # Both 1x1 heads as one matmul over the channels-last map (as 1x1 convs they took torch's slow
        # im2col path); the face head as one logit difference instead of softmax over two channels.
        w = torch.cat([self.box.weight, self.cls.weight[1:] - self.cls.weight[:1]])[:, :, 0, 0]
        b = torch.cat([self.box.bias, self.cls.bias[1:] - self.cls.bias[:1]])
        out = F.linear(x.permute(0, 2, 3, 1), w, b)
        return out[..., 4], out[..., :4]


class RNet(nn.Module):
    """Refinement net: (N, 24, 24, 3) float32 -> face logit (N,), box offsets (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.box, self.cls = nn.Linear(128, 4), nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(_pixels_in(self.conv1, x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).flatten(1)  # the dense weights were reordered for NCHW flatten
        x = self.prelu4(self.dense(x))
        return _face_logit(self.cls(x)), self.box(x)


class ONet(nn.Module):
    """Output net: (N, 48, 48, 3) float32 -> face logit (N,), box offsets (N, 4), landmarks
    (N, 10: 5 x, 5 y)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.box, self.landmarks, self.cls = nn.Linear(256, 4), nn.Linear(256, 10), nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(_pixels_in(self.conv1, x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).flatten(1)
        x = self.prelu5(self.dense(x))
        return _face_logit(self.cls(x)), self.box(x), self.landmarks(x)


ARCHITECTURES: dict[str, tuple[type[nn.Module], int]] = {
    "pnet": (PNet, 12),
    "rnet": (RNet, 24),
    "onet": (ONet, 48),
}


def build(key: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """The net ``key`` with converted weights loaded, in eval mode."""
    module = ARCHITECTURES[key][0]()
    module.load_state_dict(state)
    return module.eval()
