"""Video benchmark: throughput and identity quality of `faceprint watch`, against the seed's anchor loop
(detect + embed + match every face of every frame, no tracking) in the same run.

    python bench/bench_video.py [--frames N] [--identity-shots S] [--soak SECONDS] [--thresholds 0.42 0.36]

1. Throughput on ../shared/data/faces/facenet_pytorch/examples/video.mp4 (1080p crowd) and a 640x360
   rescale: full mode (every frame) and real-time mode (paced at 25 fps, frames dropped when behind);
   frames/s, ms per stage, tracks; then a sweep of the detection interval at 640x360.
2. Identity on a clip written from LFW photos (shifts, zooms, cuts, strangers): right-label fraction,
   label switches per appearance, false names given to strangers — ours vs the anchor.
3. Memory over a looped clip: RSS after warm-up and at the end.
Run it under `nice` on a shared machine and say so; timings are per process on this CPU.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "video"))  # testclip: the labelled clips the tests score too

from testclip import score_clip, write_test_clip  # noqa: E402

from faceprint.analyzer import FaceAnalyzer  # noqa: E402
from faceprint.gallery import Gallery  # noqa: E402
from faceprint.recognizer import Recognizer  # noqa: E402
from faceprint.video.options import WatchOptions  # noqa: E402
from faceprint.video.outputs import TrackLabel  # noqa: E402
from faceprint.video.pipeline import STAGES, VideoRecognizer  # noqa: E402
from faceprint.video.sources import open_source  # noqa: E402

DATA = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data"))
CROWD = DATA / "faces" / "facenet_pytorch" / "examples" / "video.mp4"
LFW = DATA / "lfw" / "lfw-deepfunneled"
GALLERY_PHOTOS = 5


def rescale(src: Path, dst: Path, size: tuple[int, int]) -> Path:
    capture = cv2.VideoCapture(str(src))
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), capture.get(cv2.CAP_PROP_FPS), size)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    writer.release()
    return dst


def anchor_run(analyzer, recognizer, source, max_frames, on_frame=None) -> dict:
    """The seed's loop: every frame, detect + align + embed every face, match each one on its own."""
    stage = {"read": 0.0, "analyze": 0.0, "match": 0.0}
    frames, faces_seen, min_face = 0, 0, analyzer.detector.min_face_size
    start = last = time.perf_counter()
    for frame in source:
        t = time.perf_counter()
        stage["read"] += t - last
        faces = analyzer.analyze(frame.image)
        t2 = time.perf_counter()
        stage["analyze"] += t2 - t
        matches = recognizer.match_faces(faces) if faces else []
        stage["match"] += time.perf_counter() - t2
        faces_seen += len(faces)
        if on_frame is not None:
            on_frame([TrackLabel(m.face.box, -1, m.name, m.confidence, m.known, False) for m in matches])
        frames += 1
        last = time.perf_counter()
        if max_frames and frames >= max_frames:
            break
    seconds = time.perf_counter() - start
    source.close()
    return {
        "frames": frames,
        "fps": frames / seconds,
        "dropped": source.dropped,
        "ms": {k: 1000 * v / max(1, frames) for k, v in stage.items()},
        "faces": faces_seen / max(1, frames),
        "min_face": min_face,
        "tracks": "-",
    }


def ours_run(analyzer, recognizer, source, options, max_frames, on_frame=None, video_out=None) -> dict:
    faces = []  # faces labelled per frame (tracked faces, on detection frames and between them)
    scale = []  # source pixels per detection pixel (frames wider than detect_width are downscaled)

    def count(frame, labels) -> None:
        if not scale:
            width = frame.image.shape[1]
            scale.append(max(1.0, width / options.detect_width) if options.detect_width else 1.0)
        faces.append(len(labels))
        if on_frame is not None:
            on_frame(labels)

    summary = VideoRecognizer(analyzer, recognizer, options).run(
        source, max_frames=max_frames, on_frame=count, video_out=video_out
    )
    return {
        "frames": summary.frames,
        "fps": summary.fps,
        "dropped": summary.dropped,
        "ms": summary.stage_ms,
        "faces": sum(faces) / max(1, len(faces)),
        "min_face": analyzer.detector.min_face_size * (scale[0] if scale else 1.0),
        "tracks": str(summary.tracks),
    }


def timed(run, *args, **kwargs) -> dict:
    """``run(...)`` plus the process CPU time it used per frame (all threads): on a busy machine the wall
    clock mostly measures the neighbours, CPU time mostly this process."""
    cpu = time.process_time()
    result = run(*args, **kwargs)
    result["cpu_ms"] = 1000 * (time.process_time() - cpu) / max(1, result["frames"])
    return result


def print_throughput(rows: list[tuple[str, dict]]) -> None:
    stages = [*STAGES, "analyze"]
    print(
        "| run | frames | dropped | fps | CPU ms/frame | "
        + " | ".join(f"{s} ms" for s in stages)
        + " | min face px (source) | faces/frame | tracks |"
    )
    print("|---|---:|---:|---:|---:|" + "---:|" * len(stages) + "---:|---:|---:|")
    for name, r in rows:
        cells = " | ".join(f"{r['ms'][s]:.1f}" if s in r["ms"] else "-" for s in stages)
        print(
            f"| {name} | {r['frames']} | {r['dropped']} | {r['fps']:.1f} | {r['cpu_ms']:.1f} | {cells} "
            f"| {r['min_face']:.0f} | {r['faces']:.1f} | {r['tracks']} |"
        )
    print()


def throughput(analyzer, recognizer, tmp: Path, max_frames: int | None) -> None:
    small = rescale(CROWD, tmp / "crowd_640x360.mp4", (640, 360))
    out = tmp / "annotated.mp4"
    rows = []
    for label, path in (("1080p", CROWD), ("640x360", small)):
        rows.append(
            (f"anchor {label} full", timed(anchor_run, analyzer, recognizer, open_source(path), max_frames))
        )
        for mode, realtime in (("full", False), ("real-time", True)):
            source = open_source(path, realtime=realtime)
            result = timed(ours_run, analyzer, recognizer, source, WatchOptions(), max_frames, video_out=out)
            rows.append((f"ours {label} {mode}", result))
    # The crowd's faces are mostly 12-35 px at 640 px wide (the detection width): at the default smallest
    # face most are not searched for. These rows search at their real sizes, at a cost.
    small_faces = FaceAnalyzer(detector_options={"min_face_size": 20}, embedder=analyzer.embedder)
    for label, path in (("1080p", CROWD), ("640x360", small)):
        result = timed(anchor_run, small_faces, recognizer, open_source(path), max_frames)
        rows.append((f"anchor {label} full", result))
        result = timed(
            ours_run, small_faces, recognizer, open_source(path), WatchOptions(), max_frames, video_out=out
        )
        rows.append((f"ours {label} full", result))
    print(
        "## Throughput (crowd video; ours: detect every 3rd frame at <= 640 px wide, annotated mp4 written)\n"
    )
    print_throughput(rows)
    rows = []
    for every in (1, 2, 3, 5):
        source = open_source(small)
        result = timed(
            ours_run,
            analyzer,
            recognizer,
            source,
            WatchOptions(detect_every=every),
            max_frames,
            video_out=out,
        )
        rows.append((f"640x360 detect every {every}", result))
    print("## Detection interval sweep (640x360, full mode, annotated mp4 written)\n")
    print_throughput(rows)


def pick_people(count: int, strangers: int) -> tuple[list[str], list[str]]:
    """The first people (alphabetically) with enough photos: no hand-picking."""
    people = [d.name for d in sorted(LFW.iterdir()) if len(list(d.glob("*.jpg"))) >= GALLERY_PHOTOS + 4]
    return people[:count], people[count : count + strangers]


def identity(analyzer, tmp: Path, shots: int, thresholds: list[float | None]) -> None:
    enrolled, strangers = pick_people(10, 4)
    # Strangers interleaved with the first enrolled people, so they keep coming back between others.
    order = [
        *itertools.chain.from_iterable(zip(enrolled, strangers, strict=False)),
        *enrolled[len(strangers) :],
    ]
    photos = {n: sorted((LFW / n).glob("*.jpg"))[GALLERY_PHOTOS : GALLERY_PHOTOS + 4] for n in order}
    clip = write_test_clip(photos, set(enrolled), tmp / "identity.mp4", shots=shots, frames_per_shot=30)
    gallery = Gallery.open(tmp / "people.sqlite3")
    recognizer = Recognizer(gallery, analyzer)
    for name in enrolled:
        for photo in sorted((LFW / name).glob("*.jpg"))[:GALLERY_PHOTOS]:
            recognizer.enroll(name, photo)
    print(f"## Identity on an LFW clip ({len(clip.frames)} frames, {shots} shots of 30 frames, 640x360)\n")
    print(f"Enrolled ({GALLERY_PHOTOS} photos each, not shown in the clip): {', '.join(enrolled)}")
    print(f"Strangers (never enrolled): {', '.join(strangers)}\n")
    print(
        "| run | threshold | right | right once decided | missed | switches/appearance | false names | "
        "wrong names | fps |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for threshold in thresholds:
        recognizer = Recognizer(gallery, analyzer, threshold)
        for name in ("anchor", "ours"):
            labels: list = []
            if name == "anchor":
                r = anchor_run(analyzer, recognizer, open_source(clip.path), None, labels.append)
            else:
                r = ours_run(
                    analyzer, recognizer, open_source(clip.path), WatchOptions(), None, labels.append
                )
            s = score_clip(clip, labels)
            print(
                f"| {name} | {recognizer.threshold():.3f} | {s.right:.3f} | {s.right_after_decision:.3f} | "
                f"{s.missed:.3f} | {s.switches:.2f} | {s.false_names} | {s.wrong_names} | {r['fps']:.1f} |"
            )
    print(
        "\n(false names / wrong names count (frame, face) pairs; 'right' counts a track's first frames, "
        "while it gathers evidence, as not right)\n"
    )
    gallery.close()


def soak(analyzer, tmp: Path, seconds: float) -> None:
    import numpy as np

    small = rescale(CROWD, tmp / "soak_640x360.mp4", (640, 360))
    samples: list[tuple[float, float]] = []
    start = time.monotonic()

    def watch(frame, labels):
        now = time.monotonic() - start
        if frame.index % 25 == 0:
            status = Path("/proc/self/status").read_text().splitlines()
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
            samples.append((now, rss / 1024))
        if now > seconds:
            raise KeyboardInterrupt

    gallery = Gallery.open(tmp / "empty.sqlite3")
    summary = VideoRecognizer(analyzer, Recognizer(gallery, analyzer)).run(
        open_source(small, loop=True),
        video_out=tmp / "soak.mp4",
        events_out=tmp / "soak.jsonl",
        unknowns_dir=tmp / "unknowns",
        on_frame=watch,
    )
    warm = [(t, m) for t, m in samples if t > seconds / 4]
    times, rss = np.array([t for t, _ in warm]), np.array([m for _, m in warm])
    slope = np.polyfit(times, rss, 1)[0] * 60 if len(warm) > 2 else float("nan")
    print(
        f"## Memory over a looped clip ({seconds:.0f} s, {summary.frames} frames, {summary.tracks} tracks)\n"
    )
    print("| RSS after warm-up MB | RSS at end MB | max MB | trend MB/min |")
    print("|---:|---:|---:|---:|")
    print(f"| {rss[0]:.0f} | {rss[-1]:.0f} | {rss.max():.0f} | {slope:+.2f} |\n")
    gallery.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=None, help="limit each throughput run to N frames")
    parser.add_argument("--identity-shots", type=int, default=16)
    parser.add_argument("--soak", type=float, default=120.0, help="seconds of looped video (0: skip)")
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="*",
        default=None,
        help="identity runs at these thresholds, besides the calibrated default",
    )
    parser.add_argument("--skip", nargs="*", default=(), choices=("throughput", "identity", "soak"))
    args = parser.parse_args()
    analyzer = FaceAnalyzer(detector_options={"min_face_size": 40})
    print(
        f"# bench_video — {time.strftime('%Y-%m-%d %H:%M')} — {len(os.sched_getaffinity(0))} "
        f"CPU(s); detector min_face_size 40\n"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "throughput" not in args.skip:
            with Gallery.open(tmp / "throughput.sqlite3") as gallery:
                throughput(analyzer, Recognizer(gallery, analyzer), tmp, args.frames)
        if "identity" not in args.skip:
            identity(analyzer, tmp, args.identity_shots, [None, *(args.thresholds or [])])
        if "soak" not in args.skip and args.soak > 0:
            soak(analyzer, tmp, args.soak)


if __name__ == "__main__":
    main()
