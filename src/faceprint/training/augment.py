"""Batch augmentation on float tensors: horizontal flip, small random crop/zoom, colour jitter.

Hand-written because torchvision is not a dependency; all randomness comes from the given generator so a
resumed run replays the same augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    flip: bool = True
    crop: float = 0.1  # up to this fraction of zoom-in and shift of the chip
    colour: float = 0.2  # brightness/contrast/saturation jitter amplitude

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``x``: (N, 3, S, S) float RGB in [0, 255]; returns the same shape."""
        n = x.shape[0]

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator) * (hi - lo) + lo).to(x.device)

        if self.flip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if self.crop > 0:
            scale = uniform(1.0 - self.crop, 1.0)
            tx, ty = uniform(-self.crop, self.crop), uniform(-self.crop, self.crop)
            theta = torch.zeros(n, 2, 3, device=x.device)
            theta[:, 0, 0], theta[:, 1, 1] = scale, scale
            theta[:, 0, 2], theta[:, 1, 2] = tx, ty
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.colour > 0:
            c = self.colour
            brightness = uniform(1 - c, 1 + c)[:, None, None, None]
            contrast = uniform(1 - c, 1 + c)[:, None, None, None]
            saturation = uniform(1 - c, 1 + c)[:, None, None, None]
            x = x * brightness
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * contrast + mean
            grey = x.mean(dim=1, keepdim=True)
            x = (x - grey) * saturation + grey
            x = x.clamp(0, 255)
        return x
