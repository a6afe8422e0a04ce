"""Online triplet mining inside a PK batch: random, semi-hard and batch-hard negatives.

Every anchor-positive pair of the batch (a != p, same label) makes one triplet for "random" and
"semi-hard"; "batch-hard" makes one per anchor (its farthest positive and nearest negative).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Strategy = Literal["random", "semi-hard", "batch-hard"]
STRATEGIES: tuple[str, ...] = ("random", "semi-hard", "batch-hard")


@dataclass(frozen=True)
class Triplets:
    """Batch indices of the mined triplets, three aligned 1-D long tensors."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor

    def __len__(self) -> int:
        return int(self.anchor.numel())


def pairwise_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """(B, B) Euclidean distances."""
    return torch.cdist(embeddings, embeddings)


def mine(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    strategy: Strategy,
    margin: float,
    generator: torch.Generator | None = None,
) -> Triplets:
    """Triplets of the batch for ``strategy``; ``generator`` drives the random choices (reproducible)."""
    with torch.no_grad():
        dist = pairwise_distances(embeddings.detach())
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos_mask = same & ~eye
        neg_mask = ~same
        if strategy == "batch-hard":
            return _batch_hard(dist, pos_mask, neg_mask)
        a, p = pos_mask.nonzero(as_tuple=True)
        candidates = neg_mask[a]  # (T, B): the negatives of each pair's anchor
        if strategy == "semi-hard":
            d_ap = dist[a, p][:, None]
            d_an = dist[a]
            candidates = candidates & (d_an > d_ap) & (d_an < d_ap + margin)
        elif strategy != "random":
            raise ValueError(f"unknown mining strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
        keep = candidates.any(dim=1)
        a, p, candidates = a[keep], p[keep], candidates[keep]
        if len(a) == 0:
            return _empty(labels.device)
        # One negative drawn uniformly among each pair's candidates.
        weights = candidates.float()
        n = torch.multinomial(weights.cpu(), 1, generator=generator).squeeze(1).to(labels.device)
        return Triplets(a, p, n)


def _batch_hard(dist: torch.Tensor, pos_mask: torch.Tensor, neg_mask: torch.Tensor) -> Triplets:
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    anchors = valid.nonzero(as_tuple=True)[0]
    d = dist[anchors]
    hardest_pos = torch.where(pos_mask[anchors], d, torch.full_like(d, -1.0)).argmax(dim=1)
    hardest_neg = torch.where(neg_mask[anchors], d, torch.full_like(d, float("inf"))).argmin(dim=1)
    return Triplets(anchors, hardest_pos, hardest_neg)


def _empty(device: torch.device) -> Triplets:
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return Triplets(empty, empty, empty)
