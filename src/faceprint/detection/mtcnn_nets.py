"""The three MTCNN architectures in PyTorch: the one definition of each, and what the detector runs.

Layer order, kernel sizes and pooling follow the Keras nets of the ``mtcnn`` package (its "same" pools are
``ceil_mode=True``). Inputs are (N, H, W, 3) float32 RGB pixel values (0-255, resampled, so not integers).
The modules hold the converted weights (their state dict is what the cache stores); ``fold`` derives the
weights the forward passes use, once, after loading: the training normalisation folded into the first
conv and the two-way face classifier reduced to one logit. The forward passes call torch's functions
directly: for the small P-Net levels, the per-call overhead of submodules was a visible share.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _fold_pixels_in(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """First-conv weights that take raw pixel values: the training normalisation (x - 127.5) / 128 folded
    in (exact: the conv has no padding), so no pass over the image is spent on it."""
    w = conv.weight.detach() * (1.0 / 128.0)
    return w, conv.bias.detach() - 127.5 * w.sum(dim=(1, 2, 3))


def _fold_face_logit(cls: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The face classifier as one output: face logit minus non-face logit, P(face) = its sigmoid (the
    two-way softmax). The nets return the logit so the detector computes the probability in float32
    NumPy, rounding near 1.0 the way a softmax does (ties at 1.0 decide the NMS order)."""
    w, b = cls.weight.detach(), cls.bias.detach()
    return w[1:] - w[:1], b[1:] - b[:1]


def _prelu_rows(x: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """PReLU of a channels-last map, as rows of W x C values with the slopes tiled along each row: on
    P-Net's 10-channel first map torch's PReLU (slopes broadcast over the channel dim) ran 3.7x slower
    than this; the values are identical."""
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n * h, w * c)
    return F.prelu(rows, slopes.repeat(w)).view(n, h, w, c).permute(0, 3, 1, 2)


def _max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pool, stride 2, ceil mode (a last odd row or column pools alone), as maxima of strided
    views, which beats torch's max_pool2d on P-Net's 10-channel channels-last maps (docs/detection.md)."""
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

    def fold(self) -> None:
        self._conv1 = _fold_pixels_in(self.conv1)
        # Both 1x1 heads as one matmul over the channels-last map (as 1x1 convs they took torch's slow
        # im2col path): four box offsets, then the face logit.
        logit_w, logit_b = _fold_face_logit(self.cls)
        self._heads = (
            torch.cat([self.box.weight.detach(), logit_w])[:, :, 0, 0].contiguous(),
            torch.cat([self.box.bias.detach(), logit_b]),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _prelu_rows(F.conv2d(x.permute(0, 3, 1, 2), *self._conv1), self.prelu1.weight)
        x = _max_pool_2x2(x)  # Keras "same" pooling
        x = F.prelu(F.conv2d(x, self.conv2.weight, self.conv2.bias), self.prelu2.weight)
        x = F.prelu(F.conv2d(x, self.conv3.weight, self.conv3.bias), self.prelu3.weight)
        out = F.linear(x.permute(0, 2, 3, 1), *self._heads)
        return out[..., 4], out[..., :4]


class RNet(nn.Module):
    """Refinement net: (N, 24, 24, 3) float32 -> face logit (N,), box offsets (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.box, self.cls = nn.Linear(128, 4), nn.Linear(128, 2)

    def fold(self) -> None:
        self._conv1 = _fold_pixels_in(self.conv1)
        self._logit = _fold_face_logit(self.cls)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.prelu(F.conv2d(x.permute(0, 3, 1, 2), *self._conv1), self.prelu1.weight)
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        x = F.prelu(F.conv2d(x, self.conv2.weight, self.conv2.bias), self.prelu2.weight)
        x = F.max_pool2d(x, 3, 2)
        x = F.prelu(F.conv2d(x, self.conv3.weight, self.conv3.bias), self.prelu3.weight)
        x = F.prelu(self.dense(x.flatten(1)), self.prelu4.weight)  # dense weights reordered for NCHW flatten
        return F.linear(x, *self._logit)[:, 0], self.box(x)


class ONet(nn.Module):
    """Output net: (N, 48, 48, 3) float32 -> face logit (N,), box offsets (N, 4), landmarks
    (N, 10: 5 x, 5 y)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.box, self.landmarks, self.cls = nn.Linear(256, 4), nn.Linear(256, 10), nn.Linear(256, 2)

    def fold(self) -> None:
        self._conv1 = _fold_pixels_in(self.conv1)
        self._logit = _fold_face_logit(self.cls)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.prelu(F.conv2d(x.permute(0, 3, 1, 2), *self._conv1), self.prelu1.weight)
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        x = F.prelu(F.conv2d(x, self.conv2.weight, self.conv2.bias), self.prelu2.weight)
        x = F.max_pool2d(x, 3, 2)
        x = F.prelu(F.conv2d(x, self.conv3.weight, self.conv3.bias), self.prelu3.weight)
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = F.prelu(F.conv2d(x, self.conv4.weight, self.conv4.bias), self.prelu4.weight)
        x = F.prelu(self.dense(x.flatten(1)), self.prelu5.weight)
        return F.linear(x, *self._logit)[:, 0], self.box(x), self.landmarks(x)


ARCHITECTURES: dict[str, tuple[type[PNet | RNet | ONet], int]] = {
    "pnet": (PNet, 12),
    "rnet": (RNet, 24),
    "onet": (ONet, 48),
}


def build(key: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """The net ``key`` with converted weights loaded and folded, in eval mode."""
    module = ARCHITECTURES[key][0]()
    module.load_state_dict(state)
    module.fold()
    return module.eval()
