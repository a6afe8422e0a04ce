"""Labelled test clips made from still photos (e.g. LFW): shots of one or two people whose photos drift and
zoom, with hard cuts between shots. Every frame's ground truth (who is where) is known, so the end-to-end
tests and bench/bench_video.py can score names per frame, label switches per track and false names.
Test-only: it lives under tests/ (bench/bench_video.py puts this folder on its path)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceprint.io import load_image
from faceprint.video.outputs import TrackLabel

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ClipFace:
    name: str
    enrolled: bool
    region: Box  # where the photo is pasted; the face is inside it
    appearance: int  # one number per person per shot: what one track should follow


@dataclass(frozen=True)
class TestClip:
    path: Path
    fps: float
    frames: tuple[tuple[ClipFace, ...], ...]  # ground truth of every frame


def write_test_clip(
    photos: dict[str, Sequence[Path]],
    enrolled: set[str],
    out: Path,
    *,
    shots: int = 12,
    frames_per_shot: int = 30,
    size: tuple[int, int] = (640, 360),
    fps: float = 25.0,
    seed: int = 0,
) -> TestClip:
    """Write an mp4 clip of ``shots`` shots cycling through the people of ``photos`` (name -> photo files
    the gallery has NOT seen), one or two people a shot; returns its per-frame ground truth."""
    rng = np.random.default_rng(seed)
    names = list(photos)
    width, height = size
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    truth: list[tuple[ClipFace, ...]] = []
    used = dict.fromkeys(names, 0)
    for shot in range(shots):
        count = 1 + shot % 2
        people = [names[(shot + i * 3) % len(names)] for i in range(count)]
        background = rng.integers(40, 220, size=3)
        plans = []
        for slot, name in enumerate(people):
            still = load_image(photos[name][used[name] % len(photos[name])])
            used[name] += 1
            zoom0, zoom1 = rng.uniform(0.75, 1.05, size=2)
            lane = width / count
            cx0 = lane * (slot + 0.5) + rng.uniform(-0.1, 0.1) * lane
            cx1 = cx0 + rng.uniform(-0.15, 0.15) * lane
            cy0, cy1 = height / 2 + rng.uniform(-20, 20, size=2)
            plans.append((name, still, (zoom0, zoom1), (cx0, cx1), (cy0, cy1)))
        for f in range(frames_per_shot):
            a = f / max(1, frames_per_shot - 1)
            canvas = np.empty((height, width, 3), np.uint8)
            canvas[:] = background
            faces = []
            for name, still, zoom, cx, cy in plans:
                side = round(still.shape[0] * ((1 - a) * zoom[0] + a * zoom[1]) * height / 360)
                side = min(side, height, round(width / len(plans)))
                x = int(np.clip((1 - a) * cx[0] + a * cx[1] - side / 2, 0, width - side))
                y = int(np.clip((1 - a) * cy[0] + a * cy[1] - side / 2, 0, height - side))
                canvas[y : y + side, x : x + side] = cv2.resize(
                    still, (side, side), interpolation=cv2.INTER_AREA
                )
                region = (x, y, x + side, y + side)
                faces.append(ClipFace(name, name in enrolled, region, shot * 2 + len(faces)))
            writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
            truth.append(tuple(faces))
    writer.release()
    return TestClip(Path(out), fps, tuple(truth))


@dataclass(frozen=True)
class ClipScore:
    face_frames: int  # (frame, face) pairs in the ground truth
    right: float  # fraction of them shown with the right label (name, or unknown for strangers)
    right_after_decision: float  # the same, leaving out frames where the track was still gathering evidence
    missed: float  # fraction with no track on the face
    switches: float  # label changes per appearance of a person (what one track follows), once decided
    false_names: int  # (frame, face) pairs of strangers shown with an enrolled name
    wrong_names: int  # (frame, face) pairs of enrolled people shown with another enrolled name


def score_clip(clip: TestClip, labels_per_frame: Sequence[Sequence[TrackLabel]]) -> ClipScore:
    """Compare the labels a run drew on each frame with the clip's ground truth."""
    total = right = decided = right_decided = missed = false_names = wrong_names = 0
    history: dict[int, list[str]] = {}
    for truth, labels in zip(clip.frames, labels_per_frame, strict=False):
        for face in truth:
            total += 1
            x1, y1, x2, y2 = face.region
            inside = [
                lb
                for lb in labels
                if x1 <= (lb.box[0] + lb.box[2]) / 2 <= x2 and y1 <= (lb.box[1] + lb.box[3]) / 2 <= y2
            ]
            if not inside:
                missed += 1
                continue
            # LFW photos are centred on their subject; other faces are people in its background (some as
            # large as the subject).
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            label = min(
                inside,
                key=lambda lb: (
                    ((lb.box[0] + lb.box[2]) / 2 - cx) ** 2 + ((lb.box[1] + lb.box[3]) / 2 - cy) ** 2
                ),
            )
            expected = face.name if face.enrolled else "unknown"
            ok = not label.pending and label.name == expected
            right += ok
            if not label.pending:
                decided += 1
                right_decided += ok
                history.setdefault(face.appearance, []).append(label.name)
                if label.name != "unknown" and not face.enrolled:
                    false_names += 1
                if label.name not in ("unknown", face.name) and face.enrolled:
                    wrong_names += 1
    changes = [sum(a != b for a, b in itertools.pairwise(h)) for h in history.values()]
    return ClipScore(
        total,
        right / max(1, total),
        right_decided / max(1, decided),
        missed / max(1, total),
        sum(changes) / max(1, len(changes)),
        false_names,
        wrong_names,
    )
