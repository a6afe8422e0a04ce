"""Mining and loss on hand-made embeddings whose right triplets are known by construction."""

from __future__ import annotations

import pytest
import torch

from faceprint.training.losses import triplet_loss
from faceprint.training.mining import Triplets, mine

# Points on a line: identity 0 at 0.0 and 0.5, identity 1 at 0.7 and 3.0. Distances:
# d01 0.5, d02 0.7, d03 3.0, d12 0.2, d13 2.5, d23 2.3.
POINTS = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.7, 0.0], [3.0, 0.0]])
LABELS = torch.tensor([0, 0, 1, 1])
MARGIN = 0.5


def as_set(t: Triplets) -> set[tuple[int, int, int]]:
    return set(zip(t.anchor.tolist(), t.positive.tolist(), t.negative.tolist(), strict=True))


def test_semi_hard_picks_negatives_inside_the_margin_band() -> None:
    # (0,1): band (0.5, 1.0) holds 2 (0.7). (1,0): 2 is harder (0.2), 3 too easy (2.5): none.
    # (2,3): band (2.3, 2.8): 0 at 0.7 and 1 at 0.2 are both harder: none. (3,2): 1 at 2.5 fits, 0 at 3.0 not.
    assert as_set(mine(POINTS, LABELS, "semi-hard", MARGIN)) == {(0, 1, 2), (3, 2, 1)}


def test_batch_hard_takes_farthest_positive_and_nearest_negative() -> None:
    assert as_set(mine(POINTS, LABELS, "batch-hard", MARGIN)) == {(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1)}
    # With a second positive the farthest one is chosen.
    points = torch.cat([POINTS, torch.tensor([[1.5, 0.0]])])
    labels = torch.cat([LABELS, torch.tensor([0])])
    hard = {(a, p, n) for a, p, n in as_set(mine(points, labels, "batch-hard", MARGIN)) if a == 0}
    assert hard == {(0, 4, 2)}


def test_random_uses_every_positive_pair_and_only_true_negatives() -> None:
    seen_negatives: dict[tuple[int, int], set[int]] = {}
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        t = mine(POINTS, LABELS, "random", MARGIN, gen)
        assert {(a, p) for a, p, _ in as_set(t)} == {(0, 1), (1, 0), (2, 3), (3, 2)}
        for a, p, n in as_set(t):
            assert LABELS[n] != LABELS[a]
            seen_negatives.setdefault((a, p), set()).add(n)
    assert seen_negatives[(0, 1)] == {2, 3}  # both negatives get drawn


def test_random_is_reproducible_with_a_seeded_generator() -> None:
    emb = torch.nn.functional.normalize(torch.randn(24, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    labels = torch.arange(6).repeat_interleave(4)
    first = mine(emb, labels, "random", 0.2, torch.Generator().manual_seed(7))
    again = mine(emb, labels, "random", 0.2, torch.Generator().manual_seed(7))
    assert torch.equal(first.negative, again.negative)


def test_triplet_loss_values() -> None:
    # (0,1,2): 0.5 - 0.7 + m; (3,2,1): 2.3 - 2.5 + m; with m = 0.5 both are 0.3.
    t = mine(POINTS, LABELS, "semi-hard", MARGIN)
    assert float(triplet_loss(POINTS, t, MARGIN)) == pytest.approx(0.3, abs=1e-6)
    # An easy triplet costs nothing: (0, 1, 3) has d_an - d_ap = 2.5 > margin.
    easy = Triplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([3]))
    assert float(triplet_loss(POINTS, easy, MARGIN)) == 0.0


def test_loss_without_triplets_is_zero_and_differentiable() -> None:
    emb = POINTS.clone().requires_grad_(True)
    empty = mine(torch.tensor([[0.0, 0.0], [5.0, 0.0]]), torch.tensor([0, 1]), "semi-hard", MARGIN)
    assert len(empty) == 0
    loss = triplet_loss(emb, empty, MARGIN)
    loss.backward()
    assert loss.item() == 0.0 and emb.grad is not None


def test_loss_gradient_pulls_positive_in_and_pushes_negative_out() -> None:
    emb = POINTS.clone().requires_grad_(True)
    triplet_loss(emb, Triplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2])), MARGIN).backward()
    # Gradient descent moves the positive (x=0.5) towards the anchor (x=0) and the negative (0.7) away.
    assert emb.grad[1, 0] > 0 and emb.grad[2, 0] < 0
