"""Service benchmark: `faceprint serve` under load, against the library called directly, in one run.

    python bench/bench_service.py [--clients 16] [--seconds 60] [--soak SECONDS] [--no-live | --live-only]

1. Anchor: the same mix of requests (identify 60%, verify 20%, enrol 20%) on the same images, made by
   calling the library (Recognizer.identify / verify, Recognizer.enroll) in one process, one call at
   a time: requests per second.
2. Load: a real `faceprint serve` process on 127.0.0.1 (``--workers`` CPU workers, no rate limit),
   ``--clients`` concurrent httpx clients looping for ``--seconds`` in total (bounded in time and
   count), in ``--rounds`` that alternate with the anchor's (ABBA order) so both meet the same shared
   machine: server errors, p50/p99 latency per kind, requests per second and its ratio to the anchor
   (target >= 85%), and the enrolments checked afterwards: every "enrolled" answer is exactly one
   template, none lost, none twice.
3. Soak (``--soak 600``): the same mix for that long; the server's resident memory at the start (after
   a minute's warm-up of the mix) and the end, and its least-squares trend after that minute.
4. Live page: tests/service/test_browser.py in a real browser; updates per second and capture-to-draw
   delay at 640x360 as the page measures them.

Every request goes to 127.0.0.1 only. Run it under `nice` on a shared machine and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

DATA = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data"))
KNN = DATA / "faces" / "face_recognition" / "examples" / "knn_examples"
LFW = DATA / "lfw" / "lfw-deepfunneled"
MIX = ("identify",) * 6 + ("verify",) * 2 + ("enrol",) * 2
MAX_REQUESTS = 100_000  # a bound on any run, whatever its duration


def workload(seed: int = 0):
    """Identify photos (multi-face and portraits), verify pairs, and a stream of distinct enrolment
    photos (LFW: every photo used once, so each enrolment is new)."""
    rng = random.Random(seed)
    identify = sorted((KNN / "test").glob("*.jpg")) + sorted(KNN.glob("train/*/*.*"))
    pairs = [(a, b) for a, b in itertools.combinations(sorted(KNN.glob("train/*/*.*")), 2)]
    rng.shuffle(pairs)
    people = sorted(p for p in LFW.iterdir() if p.is_dir())
    rng.shuffle(people)
    enrol = ((p.name, photo) for p in people for photo in sorted(p.iterdir()))
    return identify, pairs, enrol


def seed_gallery(path: Path, analyzer) -> None:
    from faceprint.gallery import Gallery
    from faceprint.recognizer import Recognizer

    with Gallery.open(path) as gallery:
        Recognizer(gallery, analyzer).enroll_dir(KNN / "train")


# -- the anchor: the library in one process ---------------------------------------------------------


def run_direct(gallery_path: Path, analyzer, seconds: float, enrol_iter) -> dict:
    from faceprint.errors import FaceprintError
    from faceprint.gallery import Gallery
    from faceprint.recognizer import Recognizer

    identify, pairs, _ = workload()
    kinds = itertools.cycle(MIX)
    counts: Counter = Counter()
    with Gallery.open(gallery_path) as gallery:
        recognizer = Recognizer(gallery, analyzer)
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds and i < MAX_REQUESTS:
            kind = next(kinds)
            if kind == "identify":
                recognizer.identify(identify[i % len(identify)], top_k=3)
            elif kind == "verify":
                a, b = pairs[i % len(pairs)]
                # A photo with two comparable faces raises; the service answers 422 the same way.
                with contextlib.suppress(FaceprintError):
                    recognizer.verify(a, b)
            else:
                name, photo = next(enrol_iter)
                Recognizer(gallery, analyzer).enroll(name, photo)
            counts[kind] += 1
            i += 1
        elapsed = time.perf_counter() - start
    return {"requests": i, "seconds": elapsed, "rps": i / elapsed, "counts": dict(counts)}


# -- the service ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gallery: Path, workers: int = 2) -> tuple[subprocess.Popen, str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cli = [sys.executable, "-c", "from faceprint.cli import main; main()"]
    token = subprocess.run(
        [*cli, "keys", "create", "--role", "admin", "--name", "bench", "--gallery", str(gallery)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [
            *cli,
            "serve",
            "--gallery",
            str(gallery),
            "--port",
            str(port),
            "--rate-limit",
            "0",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/api/v1/ready", headers={"X-API-Key": token}, timeout=2)
            if r.status_code == 200:
                return proc, url, token
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not become ready in 180 s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, token: str, clients: int, seconds: float, enrol_iter, on_tick=None) -> dict:
    identify, pairs, _ = workload()
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: Counter = Counter()
    enrolled: Counter = Counter()  # name -> "enrolled" answers
    counter = itertools.count()
    deadline = time.perf_counter() + seconds
    files = {p: p.read_bytes() for p in identify}

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            i = next(counter)
            if i >= MAX_REQUESTS:
                return
            kind = MIX[i % len(MIX)]
            t = time.perf_counter()
            if kind == "identify":
                photo = identify[i % len(identify)]
                r = await client.post(
                    "/api/v1/identify",
                    files={"image": (photo.name, files[photo])},
                    data={"top_k": "3", "unknowns": "false"},
                )
            elif kind == "verify":
                a, b = pairs[i % len(pairs)]
                r = await client.post(
                    "/api/v1/verify", files={"image_a": a.read_bytes(), "image_b": b.read_bytes()}
                )
            else:
                name, photo = next(enrol_iter)
                r = await client.post(
                    "/api/v1/enroll", data={"name": name}, files={"image": photo.read_bytes()}
                )
                if r.status_code == 200 and r.json()["status"] == "enrolled":
                    enrolled[" ".join(name.split())] += 1
            latencies[kind].append(time.perf_counter() - t)
            statuses[r.status_code] += 1

    async def ticker() -> None:
        while time.perf_counter() < deadline:
            await asyncio.sleep(10)
            if on_tick:
                on_tick()

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": token}, timeout=120, limits=limits) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for _ in range(clients)), ticker())
        elapsed = time.perf_counter() - start
    total = sum(statuses.values())
    return {
        "requests": total,
        "seconds": elapsed,
        "rps": total / elapsed,
        "latencies": latencies,
        "statuses": dict(statuses),
        "enrolled": enrolled,
    }


def check_enrolments(gallery: Path, before: dict[str, int], enrolled: Counter) -> tuple[int, int]:
    """(lost, duplicated): templates per person compared with the "enrolled" answers."""
    from faceprint.gallery import Gallery

    with Gallery.open(gallery) as g:
        now = {p.name: p.n_templates for p in g.people()}
    lost = dup = 0
    for name in set(now) | set(enrolled):
        added = now.get(name, 0) - before.get(name, 0)
        lost += max(0, enrolled[name] - added)
        dup += max(0, added - enrolled[name])
    return lost, dup


def merge_runs(runs: list[dict]) -> dict:
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: Counter = Counter()
    enrolled: Counter = Counter()
    for run in runs:
        for kind, values in run["latencies"].items():
            latencies[kind] += values
        statuses.update(run["statuses"])
        enrolled.update(run["enrolled"])
    requests, seconds = sum(r["requests"] for r in runs), sum(r["seconds"] for r in runs)
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds,
        "latencies": latencies,
        "statuses": dict(statuses),
        "enrolled": enrolled,
    }


def rounds(runs: list[dict]) -> list[str]:
    return [f"{r['rps']:.2f}" for r in runs]


def pct(values: list[float], q: float) -> float:
    return 1000 * statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


def live_numbers() -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "live.json"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO / "src"),
            "FACEPRINT_LIVE_REPORT": str(report),
            "FACEPRINT_LIVE_SECONDS": "10",
        }
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/service/test_browser.py"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        if not report.exists():
            print(done.stdout[-2000:])
            return None
        return json.loads(report.read_text())


def print_live(live: dict | None) -> None:
    if live:
        print(
            f"\nLive page (real browser, fake camera, 640x360): {live['updates_per_s']:.1f} answers/s, "
            f"{live['page_fps']:.1f} drawn/s, capture-to-draw delay {live['delay_ms']:.0f} ms (median)"
        )
    else:
        print("\nLive page: the browser test did not run (see above)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--rounds", type=int, default=3, help="library/service rounds the seconds are split in"
    )
    parser.add_argument("--soak", type=float, default=0, help="seconds of soak after the load run (0: none)")
    parser.add_argument("--no-live", action="store_true", help="skip the browser measurement")
    parser.add_argument("--live-only", action="store_true", help="only the browser measurement")
    args = parser.parse_args()
    if args.live_only:
        print(f"machine load average before: {os.getloadavg()[0]:.1f} (2 cores)")
        print_live(live_numbers())
        print(f"machine load average after: {os.getloadavg()[0]:.1f}")
        return
    if not KNN.exists() or not LFW.exists():
        raise SystemExit(f"needs the shared data ({KNN}, {LFW})")

    from faceprint.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer()
    _, _, enrol_iter = workload()
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    print(f"machine load average before: {os.getloadavg()[0]:.1f} (2 cores)")

    anchor_gallery = tmp / "anchor.sqlite3"
    seed_gallery(anchor_gallery, analyzer)
    run_direct(anchor_gallery, analyzer, 5, enrol_iter)  # warm-up

    gallery = tmp / "service.sqlite3"
    seed_gallery(gallery, analyzer)
    from faceprint.gallery import Gallery

    proc, url, token = start_server(gallery, args.workers)
    anchors, loads = [], []
    try:
        asyncio.run(load(url, token, args.clients, 5, enrol_iter))  # warm-up
        with Gallery.open(gallery) as g:
            before = {p.name: p.n_templates for p in g.people()}
        # Rounds alternate the library and the service, so both see the same (shared) machine, in the
        # order library, service, service, library, ... so that a load rising or falling through the
        # run favours neither.
        span = args.seconds / args.rounds
        for r in range(args.rounds):
            steps = [
                lambda: anchors.append(run_direct(anchor_gallery, analyzer, span, enrol_iter)),
                lambda: loads.append(asyncio.run(load(url, token, args.clients, span, enrol_iter))),
            ]
            for step in steps if r % 2 == 0 else steps[::-1]:
                step()
            print(
                f"round {r + 1}: library {anchors[-1]['rps']:.2f} req/s, service {loads[-1]['rps']:.2f} req/s"
            )
        result = merge_runs(loads)
        lost, dup = check_enrolments(gallery, before, result["enrolled"])
        soak = None
        if args.soak:
            samples: list[tuple[float, float]] = []
            t0 = time.perf_counter()
            sample = lambda: samples.append((time.perf_counter() - t0, rss_mib(proc.pid)))  # noqa: E731
            sample()
            with Gallery.open(gallery) as g:
                soak_before = {p.name: p.n_templates for p in g.people()}
            soak_run = asyncio.run(load(url, token, args.clients, args.soak, enrol_iter, on_tick=sample))
            sample()
            soak_lost, soak_dup = check_enrolments(gallery, soak_before, soak_run["enrolled"])
            soak = (samples, soak_run, soak_lost, soak_dup)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    anchor = sum(a["requests"] for a in anchors) / sum(a["seconds"] for a in anchors)

    errors = sum(n for code, n in result["statuses"].items() if code >= 500)
    print(
        f"\nLoad: {args.clients} clients x {result['seconds']:.0f} s on 127.0.0.1, "
        "mix identify/verify/enrol 6/2/2"
    )
    print(f"{'kind':10} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for kind in ("identify", "verify", "enrol"):
        values = result["latencies"][kind]
        print(f"{kind:10} {len(values):9d} {pct(values, 50):8.0f} {pct(values, 99):8.0f}")
    print(f"statuses: {result['statuses']}  server errors (5xx): {errors}")
    print(
        f"enrolments: {sum(result['enrolled'].values())} answered 'enrolled'; lost {lost}, duplicated {dup}"
    )
    print(f"\n{'':28} {'req/s':>8}")
    print(
        f"{'library, one process':28} {anchor:8.2f}   (rounds: {', '.join(rounds(anchors))}; "
        f"service rounds: {', '.join(rounds(loads))})"
    )
    print(
        f"{f'faceprint serve, {args.clients} clients':28} {result['rps']:8.2f}   "
        f"{100 * result['rps'] / anchor:.0f}% of the library (target >= 85%)"
    )
    if soak:
        samples, soak_run, soak_lost, soak_dup = soak
        soak_errors = sum(n for code, n in soak_run["statuses"].items() if code >= 500)
        warm = [rss for t, rss in samples if t >= 60] or [samples[-1][1]]
        print(
            f"\nSoak: {soak_run['seconds']:.0f} s, {soak_run['requests']} requests "
            f"({soak_run['rps']:.2f} req/s), "
            f"server errors {soak_errors}, enrolments lost {soak_lost} duplicated {soak_dup}"
        )
        after = [(t, rss) for t, rss in samples if t >= 60]
        slope = (
            statistics.linear_regression([t for t, _ in after], [r for _, r in after]).slope * 600
            if len(after) > 2
            else float("nan")
        )
        print(
            f"server RSS MiB: start {samples[0][1]:.0f}, after 1 min {warm[0]:.0f}, "
            f"end {samples[-1][1]:.0f}, "
            f"max {max(r for _, r in samples):.0f}; trend after 1 min {slope:+.1f} MiB per 10 min "
            "(least squares)"
        )
        print("  " + " ".join(f"{t:.0f}s:{r:.0f}" for t, r in samples))
    if not args.no_live:
        print_live(live_numbers())
    print(f"machine load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
