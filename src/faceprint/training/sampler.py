"""PK batches: P identities x K images each, so every batch holds positives and negatives for mining.

The batches of an epoch are a pure function of (seed, epoch): resuming at an epoch boundary replays
exactly what an uninterrupted run would have drawn, with no sampler state to save beyond the epoch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from faceprint.errors import FaceprintError


class PKSampler:
    """Yields lists of dataset indices, ``p`` identities x ``k`` images per batch.

    Identities with fewer than ``k`` images contribute all of theirs and are topped up by repeats (their
    augmented copies differ); identities with a single image cannot form a positive and are left out.
    One epoch visits every usable identity about ``max(1, images // k)`` times.
    """

    def __init__(self, labels: Sequence[int], p: int, k: int, seed: int = 0) -> None:
        groups: dict[int, list[int]] = defaultdict(list)
        for i, label in enumerate(labels):
            groups[int(label)].append(i)
        self.groups = {lab: np.array(idx) for lab, idx in sorted(groups.items()) if len(idx) >= 2}
        if len(self.groups) < max(2, p):
            raise FaceprintError(
                f"PK sampling needs at least {max(2, p)} identities with 2+ images; "
                f"the training set has {len(self.groups)}"
            )
        self.p, self.k, self.seed = p, k, seed

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` (deterministic in seed and epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        # Each identity gets one slot per k images, so large identities are seen in proportion.
        slots: list[int] = []
        for label, idx in self.groups.items():
            slots += [label] * max(1, len(idx) // self.k)
        order = rng.permutation(np.array(slots))
        batches: list[list[int]] = []
        current: list[int] = []
        for label in order:
            if label in current:
                continue  # an identity appears once per batch; its other slots come in later batches
            current.append(int(label))
            if len(current) == self.p:
                batches.append(self._fill(current, rng))
                current = []
        return batches

    def _fill(self, labels: list[int], rng: np.random.Generator) -> list[int]:
        batch: list[int] = []
        for label in labels:
            idx = self.groups[label]
            take = rng.choice(idx, size=self.k, replace=len(idx) < self.k)
            batch += [int(i) for i in take]
        return batch
