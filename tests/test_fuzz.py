"""Fuzzing the real load + detect path: mutated JPEG, PNG, WebP and TIFF files (bit flips, truncations,
header edits, spliced and repeated bytes) made from real face photos. Each one must give a result or an
ImageError, within a time and a memory bound: never another exception, a hang or a crash.

The mutations run in a child process (seeded, so a failure is reproducible), which reports every
outcome and its own peak RSS; a crash or hang of the decoder shows as the child dying or timing out.
FACEPRINT_FUZZ_N sets the number of mutations (default 2000, about half a minute on a 2-core machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

N_DEFAULT = 2000
SEED = 20261206
PER_IMAGE_S = 10.0  # generous: the machine is shared; a hang is minutes
PEAK_MIB = 1500  # torch and the nets ~0.4 GB; the images are small, so anything near this is a leak

CHILD = r"""
import io, json, os, random, resource, sys, time, traceback
from pathlib import Path
import numpy as np
from PIL import Image
from faceprint.errors import ImageError
from faceprint.io import load_image
from faceprint.detection.mtcnn import MTCNNDetector

photos, n, seed = [Path(p) for p in json.loads(sys.argv[1])], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
originals = []
for photo in photos:
    img = Image.open(photo).convert("RGB")
    img.thumbnail((160, 160))
    for fmt, options in (("JPEG", {"quality": 85}), ("PNG", {}), ("WEBP", {"quality": 80}),
                         ("TIFF", {"compression": "tiff_lzw"}), ("TIFF", {})):
        buf = io.BytesIO()
        img.save(buf, format=fmt, **options)
        originals.append((fmt, buf.getvalue()))

def mutate(data: bytes) -> tuple[str, bytes]:
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "truncate", "header", "splice", "repeat", "size"])
    if kind == "flip":
        for _ in range(rng.randint(1, 24)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        b = b[: rng.randrange(len(b))]
    elif kind == "header":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(min(len(b), 64))
            b[i] = rng.randrange(256)
    elif kind == "splice":
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == "repeat":
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        b[j:j] = b[i:j][:4096]
    else:  # a huge or zero dimension where the format keeps one (PNG IHDR, or any 4 bytes early on)
        i = 16 if b[:4] == b"\x89PNG" else rng.randrange(min(len(b) - 4, 48))
        b[i : i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x01\x00\x00"])
    return kind, bytes(b)

detector = MTCNNDetector()
detector.detect(np.zeros((64, 64, 3), np.uint8))  # load the nets before timing
outcomes = {}
slowest = (0.0, "")
failures = []
for k in range(n):
    fmt, data = originals[k % len(originals)]
    kind, blob = mutate(data)
    start = time.perf_counter()
    try:
        faces = detector.detect(load_image(blob))
        outcome = "faces" if faces else "no face"
    except ImageError as err:
        outcome = "ImageError"
        if "\n" in str(err):
            failures.append(f"#{k} {fmt}/{kind}: multi-line message {str(err)!r}")
    except Exception:
        failures.append(f"#{k} {fmt}/{kind}: " + traceback.format_exc(limit=3))
        outcome = "other"
    took = time.perf_counter() - start
    if took > slowest[0]:
        slowest = (took, f"#{k} {fmt}/{kind}")
    key = f"{fmt}/{outcome}"
    outcomes[key] = outcomes.get(key, 0) + 1
with open("/proc/self/status") as status:
    peak_kib = int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
print(json.dumps({"outcomes": outcomes, "failures": failures[:20], "slowest": slowest, "peak_kib": peak_kib}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures VmHWM in /proc (Linux)")
def test_mutated_images_give_a_result_or_an_image_error(faces_dir: Path) -> None:
    n = int(os.environ.get("FACEPRINT_FUZZ_N", N_DEFAULT))
    examples = faces_dir / "face_recognition" / "examples"
    photos = [examples / "obama.jpg", examples / "biden.jpg", examples / "two_people.jpg"]
    photos.append(examples / "alex-lacamoire.png")
    env = {**os.environ, "PYTHONWARNINGS": "error"}  # a warning escaping would be an exception here
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([str(p) for p in photos]), str(n), str(SEED)],
        capture_output=True,
        text=True,
        timeout=60 + n * PER_IMAGE_S / 20,  # a hang ends the run well before n x the per-image bound
        env=env,
    )
    assert proc.returncode == 0, f"the child died (status {proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failures"] == [], "\n".join(report["failures"])
    outcomes = report["outcomes"]
    assert sum(outcomes.values()) == n
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF"):  # every format met mutations it must refuse
        assert outcomes.get(f"{fmt}/ImageError", 0) > 0, outcomes
    # and the detector met mutated pixels (PNG's checksums refuse nearly every change, JPEG's do not)
    assert outcomes.get("JPEG/faces", 0) + outcomes.get("JPEG/no face", 0) > 0, outcomes
    assert report["slowest"][0] < PER_IMAGE_S, report["slowest"]
    assert report["peak_kib"] / 1024 < PEAK_MIB, report["peak_kib"]
    assert proc.stderr.strip() == "", proc.stderr[:3000]  # no decoder or library noise either
