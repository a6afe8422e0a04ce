"""Image loading: every kind of input decodes to RGB uint8 or fails with a message naming the file."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceprint.errors import ImageError
from faceprint.io import load_image


def _jpeg_bytes(image: np.ndarray, **save_args) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95, **save_args)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_rgb_jpeg_from_path_bytes_pil_and_array(tmp_path: Path, astronaut: np.ndarray) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg_bytes(astronaut))
    from_path = load_image(path)
    assert from_path.shape == astronaut.shape and from_path.dtype == np.uint8
    # JPEG is lossy: close to the original, and every input route gives the same pixels.
    assert np.abs(from_path.astype(int) - astronaut).mean() < 3
    np.testing.assert_array_equal(load_image(str(path)), from_path)
    np.testing.assert_array_equal(load_image(path.read_bytes()), from_path)
    np.testing.assert_array_equal(load_image(Image.open(path)), from_path)
    np.testing.assert_array_equal(load_image(astronaut), astronaut)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"nope\.jpg: no such file"):
        load_image(tmp_path / "nope.jpg")


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg: empty file"):
        load_image(path)


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 20)
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image"):
        load_image(path)


def test_truncated_jpeg(tmp_path: Path, astronaut: np.ndarray) -> None:
    data = _jpeg_bytes(astronaut)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: corrupt or truncated"):
        load_image(path)


def test_corrupt_bytes_inside_jpeg(tmp_path: Path, astronaut: np.ndarray) -> None:
    data = bytearray(_jpeg_bytes(astronaut))
    data[2:40] = b"\x00" * 38  # wipe the segment headers after SOI
    path = tmp_path / "garbled.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"garbled\.jpg"):
        load_image(path)


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    # A 100000 x 100000 PNG header with almost no data: must be refused from the header alone.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(ImageError, match=r"bomb\.png: image too large"):
        load_image(path)


def test_pixel_limit_is_adjustable(astronaut: np.ndarray) -> None:
    with pytest.raises(ImageError, match="too large"):
        load_image(_jpeg_bytes(astronaut), max_pixels=1000)


def test_grey_image_becomes_three_equal_channels(tmp_path: Path, astronaut: np.ndarray) -> None:
    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    path = tmp_path / "grey.png"
    Image.fromarray(grey).save(path)
    out = load_image(path)
    assert out.shape == (*grey.shape, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


def test_rgba_drops_alpha(tmp_path: Path, astronaut: np.ndarray) -> None:
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    np.testing.assert_array_equal(load_image(path), astronaut)
    np.testing.assert_array_equal(load_image(rgba), astronaut)


def test_16_bit_grey_png_keeps_full_range(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 256 * 64).reshape(64, 256).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (64, 256, 3)
    assert out.min() == 0 and out.max() == 255
    # Monotone like the source: a 16-bit ramp must not wrap around or clip at 255.
    assert np.all(np.diff(out[:, :, 0].ravel().astype(int)) >= 0)


def test_exif_orientation_is_applied(tmp_path: Path, astronaut: np.ndarray) -> None:
    # Orientation 6 means "rotate 90 degrees clockwise to display": the stored pixels are the upright
    # image rotated counter-clockwise.
    stored = np.ascontiguousarray(np.rot90(astronaut, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_bytes(stored, exif=exif.tobytes()))
    out = load_image(path)
    assert out.shape == astronaut.shape
    assert np.abs(out.astype(int) - astronaut).mean() < 3


def test_unsupported_array_types() -> None:
    with pytest.raises(ImageError, match="float"):
        load_image(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(ImageError, match="no pixels"):
        load_image(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ImageError, match="unsupported image input"):
        load_image(12345)  # type: ignore[arg-type]


def test_every_shared_still_decodes(faces_dir: Path) -> None:
    stills = [p for p in faces_dir.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}]
    assert len(stills) >= 30
    for path in stills:
        image = load_image(path)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8, path
