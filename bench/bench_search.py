"""Exact gallery search latency and memory at 10k, 100k and 1M templates, side by side:

- faceprint: ``MatchIndex`` (NumPy matmul + per-person reduction + top-k), the gallery's search;
- FAISS ``IndexFlatIP`` (exact inner product, top-k templates, no per-person grouping) as the anchor.

Templates are real LFW embeddings of the default pipeline (through the evaluation cache), grouped by
identity, padded with random unit vectors (one pseudo-person each) up to the gallery size. Queries are
other real LFW faces, one at a time (the per-face cost when identifying a photo). Both run on
``--threads`` threads (default 2, the issue's target: 100k exact in <= 20 ms per query on 2 cores).

    python bench/bench_search.py [--sizes 10000 100000 1000000] [--queries 200] [--every 8]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from provenance import pipeline_cache

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def real_embeddings(every: int) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, identity ids) of the LFW images of every ``every``-th person (sorted by name), embedded
    by the default pipeline; the same subset as ``bench_identify_lfw.py --every``, the cache serves both."""
    from faceprint.evaluation.runner import EmbeddingRunner
    from faceprint.io import labelled_images

    people = labelled_images(DATA / "lfw" / "lfw-deepfunneled")
    names = list(people)[::every]
    paths = [p for n in names for p in people[n]]
    identities = np.array([i for i, n in enumerate(names) for _ in people[n]])
    run = EmbeddingRunner(cache=pipeline_cache()).embed_paths(paths)
    return run.vectors[run.found], identities[run.found]


def gallery_matrix(real: np.ndarray, ids: np.ndarray, size: int, rng: np.random.Generator):
    from faceprint.gallery.store import EmbedderKey, TemplateMatrix

    fill = size - len(real)
    noise = rng.standard_normal((fill, real.shape[1])).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    vectors = np.concatenate([real, noise])
    persons = np.concatenate([ids, ids.max() + 1 + np.arange(fill)])
    return TemplateMatrix(EmbedderKey("dlib-resnet", "bench"), np.arange(size), persons, vectors)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def time_queries(search, queries: np.ndarray) -> tuple[float, float]:
    search(queries[:1])  # warm-up
    times = []
    for q in queries:
        t0 = time.perf_counter()
        search(q[None])
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--every", type=int, default=8, help="real templates: every N-th LFW person")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import faiss
    from threadpoolctl import threadpool_limits

    from faceprint.gallery.matching import MatchIndex

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    vectors, ids = real_embeddings(args.every)
    # Queries: the last images (other people or other photos of gallery people), never in the gallery.
    queries, real, real_ids = vectors[-args.queries :], vectors[: -args.queries], ids[: -args.queries]
    print(
        f"{len(real)} real LFW templates, {len(queries)} real queries, "
        f"top-{args.top_k}, {args.threads} threads"
    )
    header = (
        f"{'templates':>10} | {'method':<28} | {'p50 ms':>7} | {'p99 ms':>7} | "
        f"{'index MB':>8} | {'RSS +MB':>7}"
    )
    print(header)
    print("-" * len(header))
    with threadpool_limits(args.threads):
        for size in args.sizes:
            matrix = gallery_matrix(real, real_ids, size, rng)
            before = rss_mb()
            index = MatchIndex(matrix)
            grown = rss_mb() - before
            p50, p99 = time_queries(lambda q, index=index: index.search(q, args.top_k), queries)
            print(
                f"{size:>10,} | {'faceprint numpy (per person)':<28} | {p50:7.2f} | {p99:7.2f} | "
                f"{index._vectors.nbytes / 2**20:8.0f} | {grown:7.0f}"
            )
            del index
            before = rss_mb()
            flat = faiss.IndexFlatIP(matrix.embeddings.shape[1])
            flat.add(matrix.embeddings)
            grown = rss_mb() - before
            p50, p99 = time_queries(lambda q, flat=flat: flat.search(q, args.top_k), queries)
            print(
                f"{size:>10,} | {'FAISS IndexFlatIP (templates)':<28} | {p50:7.2f} | {p99:7.2f} | "
                f"{flat.ntotal * flat.d * 4 / 2**20:8.0f} | {grown:7.0f}"
            )
            del flat, matrix


if __name__ == "__main__":
    main()
