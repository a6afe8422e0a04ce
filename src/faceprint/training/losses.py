"""Triplet loss on L2-normalised embeddings with Euclidean distances (the distance faceprint matches on)."""

from __future__ import annotations

import torch

from faceprint.training.mining import Triplets


def triplet_loss(embeddings: torch.Tensor, triplets: Triplets, margin: float) -> torch.Tensor:
    """Mean over ``triplets`` of ``max(0, d(a, p) - d(a, n) + margin)``; 0 (with a graph) if none."""
    if len(triplets) == 0:
        return embeddings.sum() * 0.0
    a, p, n = (embeddings[idx] for idx in (triplets.anchor, triplets.positive, triplets.negative))
    d_ap = (a - p).norm(dim=1)
    d_an = (a - n).norm(dim=1)
    return torch.relu(d_ap - d_an + margin).mean()
