"""Synthetic face embeddings drawn to match real ones, for galleries larger than any face data set here.

A person is a centroid drawn from a Gaussian fitted to real identities' centroids, and each of their
faces is that centroid plus a residual drawn from a Gaussian fitted to the real faces' deviations from
their person's mean, L2-normalised like a real embedding. Both Gaussians have full covariances, so the
synthetic vectors lie in the same low-dimensional region of the sphere as real faces (which is what
makes graph search easy or hard), with the same same-person and different-person distance statistics;
``distance_histograms`` prints the comparison (bench/bench_search.py shows it beside its results).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceDistribution:
    """Centroid and residual Gaussians fitted to real embeddings (see :func:`fit`)."""

    mean: np.ndarray  # (D,)
    centroid_factor: np.ndarray  # (D, D): centroid = mean + z @ centroid_factor
    residual_factor: np.ndarray  # (D, D): face = normalise(centroid + z @ residual_factor)

    def sample(
        self, n_people: int, per_person: int | np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors (N, D) float32 L2-normalised, person index (N,))`` for ``n_people`` people with
        ``per_person`` faces each (a number, or one number per person)."""
        dim = len(self.mean)
        counts = np.broadcast_to(np.asarray(per_person, np.int64), (n_people,))
        persons = np.repeat(np.arange(n_people, dtype=np.int64), counts)
        out = np.empty((len(persons), dim), np.float32)
        at = 0
        for lo in range(0, n_people, 65536):  # a block of people at a time: bounded memory at 10M
            block = counts[lo : lo + 65536]
            centroids = self.mean + rng.standard_normal((len(block), dim)) @ self.centroid_factor
            faces = np.repeat(centroids, block, axis=0)
            faces += rng.standard_normal(faces.shape) @ self.residual_factor
            out[at : at + len(faces)] = faces / np.linalg.norm(faces, axis=1, keepdims=True)
            at += len(faces)
        return out, persons


def _factor(cov: np.ndarray) -> np.ndarray:
    """A matrix F with F.T @ F = cov, negative eigenvalues (estimation noise) clipped to zero."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))).T


def fit(vectors: np.ndarray, identities: np.ndarray) -> FaceDistribution:
    """Fit the two Gaussians to real embeddings ``vectors`` (N, D) of people ``identities`` (N,).

    Residual covariance: pooled deviations from each person's mean (people with 2+ faces, scaled by
    n/(n-1) so that the mean's own noise is not subtracted away). Centroid covariance: the covariance of
    all faces minus the residual one (a face is centroid + residual)."""
    vectors = np.asarray(vectors, np.float64)
    _, inverse, counts = np.unique(identities, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), vectors.shape[1]))
    np.add.at(sums, inverse, vectors)
    means = sums / counts[:, None]
    multi = counts[inverse] > 1
    if multi.sum() < 2:
        raise ValueError("fitting needs people with two or more faces")
    residuals = (vectors - means[inverse])[multi] * np.sqrt(
        counts[inverse][multi] / (counts[inverse][multi] - 1)
    )[:, None]
    residual_cov = residuals.T @ residuals / len(residuals)
    total_cov = np.cov(vectors, rowvar=False)
    return FaceDistribution(
        mean=vectors.mean(axis=0),
        centroid_factor=_factor(total_cov - residual_cov),
        residual_factor=_factor(residual_cov),
    )


def pair_distances(
    vectors: np.ndarray, identities: np.ndarray, rng: np.random.Generator, n: int = 20000
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances of up to ``n`` random same-person pairs and ``n`` different-person pairs."""
    order = np.argsort(identities, kind="stable")
    ids = identities[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    sizes = np.diff(np.r_[starts, len(ids)])
    multi = np.flatnonzero(sizes > 1)
    same = []
    if len(multi):
        pick = rng.choice(multi, n)
        a = rng.integers(0, sizes[pick])
        b = (a + rng.integers(1, sizes[pick])) % sizes[pick]
        same = np.linalg.norm(vectors[order[starts[pick] + a]] - vectors[order[starts[pick] + b]], axis=1)
    i, j = rng.integers(0, len(vectors), (2, n))
    keep = identities[i] != identities[j]
    diff = np.linalg.norm(vectors[i[keep]] - vectors[j[keep]], axis=1)
    return np.asarray(same, np.float64), diff


def distance_histograms(
    real: tuple[np.ndarray, np.ndarray], synthetic: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
) -> str:
    """A text table: same-person and different-person distance histograms, real beside synthetic."""
    r_same, r_diff = pair_distances(*real, rng)
    s_same, s_diff = pair_distances(*synthetic, rng)
    edges = np.arange(0.0, 1.61, 0.1)
    hist = [np.histogram(d, edges)[0] / max(len(d), 1) for d in (r_same, s_same, r_diff, s_diff)]
    lines = [
        f"{'distance':>10} | {'same real':>9} | {'same synth':>10} | {'diff real':>9} | {'diff synth':>10}",
    ]
    for k in range(len(edges) - 1):
        row = " | ".join(f"{h[k]:>9.3f}" if c % 2 == 0 else f"{h[k]:>10.3f}" for c, h in enumerate(hist))
        lines.append(f"{edges[k]:4.1f}-{edges[k + 1]:<4.1f} | {row}")
    lines.append(
        f"{'mean':>10} | {r_same.mean():>9.3f} | {s_same.mean():>10.3f} | {r_diff.mean():>9.3f} | "
        f"{s_diff.mean():>10.3f}"
    )
    return "\n".join(lines)
