from __future__ import annotations

from collections import Counter

import pytest

from faceprint.errors import FaceprintError
from faceprint.training.sampler import PKSampler

# 10 identities with 2..11 images and one with a single image (it cannot give a positive).
LABELS = [c for c in range(10) for _ in range(c + 2)] + [99]


def test_batches_hold_p_identities_of_k_images() -> None:
    sampler = PKSampler(LABELS, p=4, k=3, seed=0)
    batches = sampler.batches(0)
    assert batches
    for batch in batches:
        counts = Counter(LABELS[i] for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {3}
        assert 99 not in counts
        # Identities with >= K images give K distinct images.
        for label in counts:
            if LABELS.count(label) >= 3:
                assert len({i for i in batch if LABELS[i] == label}) == 3


def test_epochs_are_reproducible_and_differ() -> None:
    a, b = PKSampler(LABELS, 4, 3, seed=5), PKSampler(LABELS, 4, 3, seed=5)
    assert a.batches(2) == b.batches(2)
    assert a.batches(2) != a.batches(3)
    assert a.batches(2) != PKSampler(LABELS, 4, 3, seed=6).batches(2)


def test_too_few_identities_is_an_error() -> None:
    with pytest.raises(FaceprintError, match="identities"):
        PKSampler([0, 0, 1], p=2, k=2)
