"""End to end on a clip the test writes from LFW photos: names per track, unknown strangers, events, the
annotated video, unknown clusters and enrolling one, Ctrl-C, and bounded memory over a looped clip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ENROLLED, STRANGERS, clip_photos
from testclip import score_clip, write_test_clip

import faceprint
from faceprint.gallery import Gallery
from faceprint.recognizer import Recognizer
from faceprint.video.clustering import load_clusters
from faceprint.video.options import WatchOptions
from faceprint.video.pipeline import VideoRecognizer
from faceprint.video.sources import open_source

# The subprocesses import the same faceprint as this test process.
SRC = Path(faceprint.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, lfw_dir):
    # Order chosen so that shot s shows people[s % 4] (and people[(s + 3) % 4] on odd shots): the stranger
    # appears in shots 1 and 5, everyone enrolled at least twice.
    people = (ENROLLED[0], STRANGERS[0], ENROLLED[1], ENROLLED[2])
    folder = tmp_path_factory.mktemp("clip")
    return write_test_clip(
        clip_photos(lfw_dir, people), set(ENROLLED), folder / "clip.mp4", shots=6, frames_per_shot=20
    )


@pytest.fixture(scope="module")
def run(clip, analyzer, lfw_gallery, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    labels = []
    summary = VideoRecognizer(analyzer, Recognizer(lfw_gallery, analyzer)).run(
        open_source(clip.path),
        video_out=out / "annotated.mp4",
        events_out=out / "events.jsonl",
        crops_dir=out / "crops",
        unknowns_dir=out / "unknowns",
        on_frame=lambda frame, frame_labels: labels.append(frame_labels),
    )
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return summary, labels, events, out


def test_names_are_right_and_strangers_stay_unknown(clip, run):
    summary, labels, _, _ = run
    assert summary.frames == len(clip.frames) and not summary.interrupted
    score = score_clip(clip, labels)
    assert score.false_names == 0 and score.wrong_names == 0
    assert score.missed < 0.02
    assert score.right >= 0.9  # the rest: a track's first frame or two, while evidence is gathered
    assert score.switches == 0
    assert set(summary.names) == {*ENROLLED, "unknown"}


def test_events_tell_the_story_of_every_track(clip, run):
    summary, _, events, out = run
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "run_ended" and events[-1]["frames"] == len(clip.frames)
    starts = [e for e in events if e["event"] == "track_started"]
    ended = {e["track"]: e for e in events if e["event"] == "track_ended"}
    assert {e["track"] for e in starts} == set(ended) and len(starts) == summary.tracks
    # One track per person per shot, started at the cut: cuts end tracks rather than hand a name to the
    # next person. Tracks starting mid-shot are people in the background of an LFW photo, never a split
    # track of someone enrolled.
    at_cuts = [e for e in starts if e["frame"] % 20 == 0]
    appearances = {face.appearance for faces in clip.frames for face in faces}
    assert sorted(_appearance(clip, e) for e in at_cuts) == sorted(appearances)
    for e in starts:
        if e not in at_cuts:
            assert ended[e["track"]]["name"] == "unknown"
    named = {e["name"] for e in events if e["event"] == "identified"}
    assert named == {*ENROLLED, "unknown"}
    for e in ended.values():
        assert e["end"] >= e["start"] and e["frames"] > 0
        assert Path(e["crop"]).is_file() and Path(e["crop"]).parent == out / "crops"
        assert (e["cluster"] is not None) == (e["name"] == "unknown")
    times = [e["time"] for e in events]
    assert times == sorted(times)


def _appearance(clip, event) -> int | None:
    x1, y1, x2, y2 = event["box"]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    for face in clip.frames[event["frame"]]:
        fx1, fy1, fx2, fy2 = face.region
        if fx1 <= cx <= fx2 and fy1 <= cy <= fy2:
            return face.appearance
    return None


def _frames(path: Path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, bgr = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_annotated_video_has_every_frame_with_boxes_in_the_label_colours(clip, run):
    annotated, original = _frames(run[3] / "annotated.mp4"), _frames(clip.path)
    assert len(annotated) == len(original) == len(clip.frames)

    def pixels_near(frame, colour):
        return int((np.abs(frame.astype(int) - colour).max(axis=2) < 40).sum())

    green, red = (40, 200, 60), (230, 50, 50)  # known, unknown (faceprint.video.outputs)
    known_frame = 10  # shot 0: an enrolled person alone
    stranger_frame = 30  # shot 1: the stranger beside an enrolled person
    assert pixels_near(annotated[known_frame], green) > pixels_near(original[known_frame], green) + 300
    assert pixels_near(annotated[stranger_frame], red) > pixels_near(original[stranger_frame], red) + 300


def test_the_stranger_seen_twice_is_one_cluster_and_can_be_enrolled(
    run, lfw_dir, lfw_gallery, analyzer, capsys
):
    from faceprint.cli import main as cli_main

    def main(argv: list[str]) -> None:
        # A command that succeeds returns normally when the CLI is called in-process.
        cli_main(argv)

    out = run[3]
    clusters = load_clusters(out / "unknowns")
    # The stranger's two appearances (two different photos) fall in one cluster; any other cluster is a
    # background face of one photo, seen once.
    cluster = max(clusters, key=lambda c: c.tracks)
    assert cluster.tracks == 2 and all(c.tracks == 1 for c in clusters if c is not cluster)
    assert cluster.crop is not None and cv2.imread(str(cluster.crop)) is not None
    main(["unknowns", "list", str(out / "unknowns")])
    listing = capsys.readouterr().out
    assert f"cluster {cluster.cluster_id}: 2 track(s)" in listing and str(cluster.crop) in listing
    main(
        [
            "unknowns",
            "enroll",
            str(out / "unknowns"),
            str(cluster.cluster_id),
            "New_Person",
            "--gallery",
            lfw_gallery.location,
        ]
    )
    # A photo of the stranger the clip never showed is now recognised under the new name.
    photo = sorted((lfw_dir / STRANGERS[0]).glob("*.jpg"))[-1]
    gallery_copy = type(lfw_gallery).open(lfw_gallery.location)
    try:
        match = Recognizer(gallery_copy, analyzer).identify(photo)[0]
    finally:
        gallery_copy.close()
    assert match.name == "New_Person"


def _watch_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from faceprint.cli import main; main()", "watch", *args]


def test_ctrl_c_flushes_every_output(clip, lfw_gallery, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    events, video = tmp_path / "events.jsonl", tmp_path / "out.mp4"
    process = subprocess.Popen(
        _watch_command(
            str(clip.path),
            "--realtime",
            "--loop",
            "--no-show",
            "--out",
            str(video),
            "--events",
            str(events),
            "--gallery",
            lfw_gallery.location,
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a script's background job would start it: SIGINT inherited ignored. Ctrl-C must still work.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (not events.exists() or "identified" not in events.read_text()):
        time.sleep(0.2)
    time.sleep(1.0)  # a few more frames into the video file
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stdout.startswith("interrupted:")
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert lines[-1]["event"] == "run_ended" and lines[-1]["interrupted"] is True
    started = {e["track"] for e in lines if e["event"] == "track_started"}
    assert started == {e["track"] for e in lines if e["event"] == "track_ended"}  # open tracks were closed
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    assert ok and frame.shape == (360, 640, 3)  # the mp4 was finalised, so it is readable


def test_broken_source_gives_a_clear_message_and_exit_status(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 5000)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    Gallery.open(tmp_path / "g.sqlite3").close()  # watch reads a gallery; only enrolling creates one
    result = subprocess.run(
        _watch_command(str(bad), "--gallery", str(tmp_path / "g.sqlite3")),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "broken.mp4" in result.stderr and "Traceback" not in result.stderr
    # Only faceprint's line: no "[mov,mp4,...] moov atom not found" from FFmpeg, no OpenCV [ WARN ].
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_memory_stays_flat_over_a_looped_clip(lfw_dir, analyzer, lfw_gallery, tmp_path):
    # Two shots (an enrolled person; the stranger beside someone enrolled), replayed for 25 s: every replay
    # starts new tracks, unknown clusters and events, which is what could pile up over hours.
    people = (ENROLLED[0], STRANGERS[0], ENROLLED[1], ENROLLED[2])
    clip = write_test_clip(
        clip_photos(lfw_dir, people), set(ENROLLED), tmp_path / "short.mp4", shots=2, frames_per_shot=20
    )
    samples: list[tuple[float, float]] = []
    start = time.monotonic()

    def watch(frame, labels):
        now = time.monotonic() - start
        if frame.index % 5 == 0:
            samples.append((now, _rss_mb()))
        if now > 25:
            raise KeyboardInterrupt  # what Ctrl-C does: the run stops cleanly

    summary = VideoRecognizer(analyzer, Recognizer(lfw_gallery, analyzer), WatchOptions()).run(
        open_source(clip.path, loop=True),
        video_out=tmp_path / "soak.mp4",
        events_out=tmp_path / "soak.jsonl",
        unknowns_dir=tmp_path / "unknowns",
        on_frame=watch,
    )
    assert summary.interrupted and summary.frames > len(clip.frames)  # looped at least once
    after_warmup = np.array([rss for t, rss in samples if t > 8])
    assert len(after_warmup) >= 5
    # Flat: no upward trend beyond allocator noise once models and buffers are warm.
    assert after_warmup.max() - after_warmup[0] < 25, after_warmup
    slope = np.polyfit(np.arange(len(after_warmup)), after_warmup, 1)[0]
    assert slope * len(after_warmup) < 15, after_warmup


def test_an_output_that_cannot_be_written_is_a_clear_error(clip, analyzer, tmp_path):
    from faceprint.video.outputs import VideoOutputError

    source = open_source(clip.path)
    with pytest.raises(VideoOutputError, match=r"missing/out\.mp4: folder .*missing does not exist"):
        VideoRecognizer(analyzer).run(source, video_out=tmp_path / "missing" / "out.mp4")
    with pytest.raises(VideoOutputError, match=r"events\.jsonl: cannot write events"):
        VideoRecognizer(analyzer).run(open_source(clip.path), events_out=tmp_path / "nope" / "events.jsonl")
