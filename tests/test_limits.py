"""Resource bounds on hostile inputs: decode limits by pixels and by memory, detection on a bounded
working copy, no warnings reaching the user. The inputs are made here."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from faceprint import io as fio
from faceprint.detection import MAX_WORKING_PIXELS, working_copy
from faceprint.detection.mtcnn import MTCNNDetector
from faceprint.errors import ImageError
from faceprint.io import load_image

# The child runs the CLI and reports its own peak RSS in kB: VmHWM, the high-water mark of the memory
# the child's program has mapped since exec. Not getrusage's ru_maxrss: Linux carries that across fork
# and exec, so a child of a big pytest process (the whole suite in one process, as in CI) reports at
# least its parent's RSS (CI saw 4546 MiB for this child, which peaks at about 0.95 GB).
_CHILD = """
import sys
from faceprint.cli import main
try:
    main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        hwm = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write(f"\\nPEAK_RSS_KB {hwm}\\n")
"""


def _png_header_only(width: int, height: int, colour_type: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures VmHWM in /proc (Linux)")
def test_9999_square_bombs_are_detected_within_a_memory_bound_and_silently(tmp_path: Path) -> None:
    # The inputs: a 1-bit PNG of 9999 x 9999 pixels (a few KB on disk) and a 9999 x 9999 JPEG.
    # Before the bounds each took about 5 GB and printed NumPy's overflow warning.
    png, jpg = tmp_path / "bomb.png", tmp_path / "big.jpg"
    Image.new("1", (9999, 9999), 1).save(png, optimize=True)
    noise = (np.random.default_rng(0).random((100, 100, 3)) * 255).astype(np.uint8)
    Image.fromarray(noise).resize((9999, 9999), Image.NEAREST).save(jpg, quality=50)
    assert png.stat().st_size < 64_000
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # a warning anywhere would be printed
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, "detect", "--json", str(png), str(jpg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(png), str(jpg)]
    assert all(face["score"] > 0 for line in lines for face in line["faces"])
    err_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err_lines) == 1 and err_lines[0].startswith("PEAK_RSS_KB"), proc.stderr  # no warning
    peak_mib = int(err_lines[0].split()[1]) / 1024
    # Decoding needs 4-7 bytes per pixel (Pillow's copy + the RGB array: 0.4-0.7 GB at 100 Mpx), torch and
    # the nets about 0.35 GB, detection on its bounded copy about 0.3 GB more; before: 5 GB.
    assert peak_mib < 1600, f"peak RSS {peak_mib:.0f} MiB"


def test_memory_limit_refuses_from_the_header_alone() -> None:
    # 13000 x 13000 RGBA (under Pillow's own bomb limit and a raised pixel limit): decoding would need
    # 7 bytes per pixel, 1.1 GiB.
    header = _png_header_only(13_000, 13_000, colour_type=6)
    message = r"<bytes>: image too large to decode \(13000x13000 RGBA needs 1,128"
    with pytest.raises(ImageError, match=message):
        load_image(header, max_pixels=10**9)
    with pytest.raises(ImageError, match="too large to decode"):
        load_image(_png_header_only(400, 300, colour_type=2), max_bytes=400 * 300 * 7 - 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_pillow_applies_it(tmp_path: Path, orientation: int) -> None:
    stored = (np.random.default_rng(orientation).random((6, 9, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).convert("RGB"))
    np.testing.assert_array_equal(load_image(buf.getvalue()), expected)


@pytest.mark.parametrize("mode", ["1", "L", "P", "P+transparency", "LA", "RGBA", "CMYK", "I;16"])
def test_conversion_in_strips_equals_pillows_whole_image(mode: str, monkeypatch, astronaut) -> None:
    monkeypatch.setattr(fio, "_STRIP_PIXELS", 5000)  # many strips, the last one partial
    base = Image.fromarray(astronaut[:101, :77])
    if mode == "P+transparency":
        img = base.convert("P")
        img.info["transparency"] = 3
    elif mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    else:
        img = base.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode == "CMYK" else "PNG")
    decoded = Image.open(io.BytesIO(buf.getvalue()))
    if mode == "I;16":
        expected = np.repeat(np.asarray(base.convert("L"))[:, :, None], 3, axis=2)
    elif mode == "P+transparency":
        expected = np.asarray(decoded.convert("RGBA").convert("RGB"))
    else:
        expected = np.asarray(decoded.convert("RGB"))
    np.testing.assert_array_equal(load_image(buf.getvalue()), expected)


def test_working_copy_is_bounded_and_maps_back() -> None:
    image = np.zeros((3000, 5000, 3), np.uint8)
    copy, sx, sy = working_copy(image, 1_000_000)
    assert copy.shape[0] * copy.shape[1] <= 1_000_000
    assert copy.shape[1] * sx == pytest.approx(5000) and copy.shape[0] * sy == pytest.approx(3000)
    same, sx, sy = working_copy(image[:100], MAX_WORKING_PIXELS)
    assert same.shape == (100, 5000, 3) and (sx, sy) == (1.0, 1.0)


def test_a_large_image_is_detected_on_a_copy_with_boxes_in_its_own_pixels(astronaut) -> None:
    full = MTCNNDetector().detect(astronaut)
    small = MTCNNDetector(max_pixels=256 * 256).detect(astronaut)  # astronaut is 512 x 512
    assert len(full) == len(small) == 1
    a, b = np.asarray(full[0].box), np.asarray(small[0].box)
    # The copy has half the resolution: boxes and landmarks agree to a few of its pixels.
    assert np.abs(a - b).max() < 8, (a, b)
    assert np.abs(full[0].landmarks - small[0].landmarks).max() < 6


def test_no_box_is_smaller_than_min_face_size(faces_dir: Path) -> None:
    detector = MTCNNDetector(min_face_size=20)
    photos = sorted((faces_dir / "face_recognition" / "examples").glob("*.jpg"))
    noise = (np.random.default_rng(3).random((900, 1200, 3)) * 255).astype(np.uint8)
    for image in [noise, *(load_image(p) for p in photos)]:
        for det in detector.detect(image):
            assert max(det.width, det.height) >= 20


def test_no_pyramid_level_is_bigger_than_the_working_bound() -> None:
    from faceprint.detection.mtcnn_boxes import pyramid_scales

    # min_face_size 1 on a 4K frame would upsample it 12x per side (a 1.2 Gpx first level; at
    # min_face_size 2 on 1080p the detector took 4 GB and a minute before the cap).
    for height, width, min_face in [(2160, 3840, 1), (1080, 1920, 2), (480, 640, 1)]:
        scales = pyramid_scales(height, width, min_face, 0.709, MAX_WORKING_PIXELS)
        assert scales and height * width * scales[0] ** 2 <= MAX_WORKING_PIXELS * (1 + 1e-9)
    # Where the bound does not bind, the pyramid is the package's: the first level maps min_face to 12 px.
    assert pyramid_scales(1080, 1920, 20, 0.709, MAX_WORKING_PIXELS)[0] == pytest.approx(12 / 20)
