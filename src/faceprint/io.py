"""Image decoding and validation: anything in, RGB uint8 HxWx3 out, or an ImageError naming the problem;
and the one way folders of images are walked (which files are images, ROOT/NAME/*.jpg people folders).

Pillow decodes rather than OpenCV because OpenCV silently returns a half-grey picture for a truncated
JPEG and accepts decompression bombs up to 2^30 pixels; Pillow raises on both and exposes EXIF and modes.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from faceprint.errors import DatasetError, ImageError

ImageInput = str | PathLike | bytes | bytearray | np.ndarray | Image.Image

# What a folder walk takes for an image, by extension (case-insensitive): the formats Pillow decodes that
# photos and frame dumps come in. Anything else in a folder (notes, thumbnails' databases) is passed over.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

# About 10k x 10k: larger photos are almost always mistakes or decompression bombs. Overridable per call.
MAX_PIXELS = 100_000_000
# What decoding one image may need at its peak: Pillow's own copy of the pixels (its bytes per pixel for
# the file's mode, below) plus the RGB array (3 bytes per pixel) the pipeline keeps while it works;
# conversion goes in strips, so nothing else grows with the image. Detection then works on a copy of
# bounded size (faceprint.detection), so this is what the whole pipeline needs per image beyond that.
MAX_DECODE_BYTES = 1 << 30
_STRIP_PIXELS = 1 << 20  # pixels converted per strip
# Pillow's storage per pixel: 1 byte for 1-bit, grey and palette images, 2 for 16-bit grey, else 4.
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# EXIF orientation -> the array view that shows the image upright (Pillow's exif_transpose table, done
# on the array so that a rotated photo does not need a second full copy inside Pillow).
_ORIENT: dict[int, Any] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def decode_bytes_needed(width: int, height: int, mode: str) -> int:
    """Peak memory (bytes) decoding an image of this size and Pillow mode to an RGB array needs."""
    return width * height * (_MODE_BYTES.get(mode, 4) + 3)


def load_image(
    source: ImageInput, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_DECODE_BYTES
) -> np.ndarray:
    """Decode ``source`` (path, encoded bytes, RGB ndarray or PIL image) to an RGB uint8 HxWx3 array.

    EXIF orientation is applied; grey, palette, RGBA/LA (alpha dropped), CMYK and 16-bit images are
    converted. Images over ``max_pixels`` pixels, or whose decoding would need more than ``max_bytes``
    of memory, are refused from their header, before any pixel is decoded. Raises :class:`ImageError`
    naming the source for anything unreadable; the decoder's warnings never reach the caller.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, "<array>")
    limits = (max_pixels, max_bytes)
    if isinstance(source, Image.Image):
        return _from_pil(source, "<PIL image>", *limits)
    if isinstance(source, bytes | bytearray):
        return _decode(bytes(source), "<bytes>", *limits)
    if isinstance(source, str | PathLike):
        path = Path(source)
        try:
            if not path.exists():
                raise ImageError(f"{path}: no such file")
            if not path.is_file():
                raise ImageError(f"{path}: not a file")
            data = path.read_bytes()
        except OSError as err:
            raise ImageError(f"{path}: cannot be read ({err.strerror or err})") from err
        return _decode(data, str(path), *limits)
    raise ImageError(
        f"unsupported image input of type {type(source).__name__}; give a path, bytes, "
        "an RGB numpy array or a PIL image"
    )


def describe(source: Any) -> str:
    """A short name for an image input, for messages and reports."""
    if isinstance(source, str | PathLike):
        return str(source)
    if isinstance(source, np.ndarray):
        return f"<array {'x'.join(map(str, source.shape))}>"
    return f"<{type(source).__name__}>"


def is_image_file(path: Path) -> bool:
    """An existing file with an image extension (:data:`IMAGE_EXTENSIONS`)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def image_files(folder: Path | str) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name (sub-folders are not entered)."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))


def labelled_images(root: Path | str) -> dict[str, list[Path]]:
    """``{person: sorted image paths}`` of a ROOT/NAME/*.jpg folder, people in name order (people
    without images left out). Raises DatasetError when ``root`` is no folder or holds no such images."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected ROOT/NAME/*.jpg, one sub-folder per person)")
    people = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        images = image_files(sub)
        if images:
            people[sub.name] = images
    if not people:
        raise DatasetError(f"{root}: no images in per-person sub-folders (expected ROOT/NAME/*.jpg)")
    return people


def _decode(data: bytes, name: str, max_pixels: int, max_bytes: int) -> np.ndarray:
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    if data[:4] in _TIFF_MAGIC:
        with _libtiff_quiet():
            return _open_and_convert(data, name, max_pixels, max_bytes)
    return _open_and_convert(data, name, max_pixels, max_bytes)


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _libtiff_quiet() -> Iterator[None]:
    """Pillow decodes TIFF with libtiff, which prints its warnings and errors ("Using code not yet in
    table", "More samples per pixel than can be decoded") to the process's stderr itself, past Python;
    for a damaged TIFF they would come before the one-line error. fd 2 goes to /dev/null meanwhile (a
    lock keeps two decodes from restoring each other's; other threads' stderr output in those
    milliseconds is lost too, which is why only TIFF gets this)."""
    with _STDERR_LOCK:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _open_and_convert(data: bytes, name: str, max_pixels: int, max_bytes: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Our own limits replace Pillow's bomb warning; its other warnings (odd EXIF, ...) are noise.
            warnings.simplefilter("ignore")
            img = Image.open(_io.BytesIO(data))
    except UnidentifiedImageError as err:
        raise ImageError(f"{name}: not an image, or a format faceprint cannot read") from err
    except Image.DecompressionBombError as err:
        raise ImageError(f"{name}: image too large ({err})") from err
    except MemoryError as err:
        raise ImageError(f"{name}: image too large to decode") from err
    except Exception as err:  # any decoder failure on a file's bytes means the file is damaged
        raise ImageError(f"{name}: corrupt image ({_why(err)})") from err
    return _from_pil(img, name, max_pixels, max_bytes)


def _why(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] or type(err).__name__


def _from_pil(img: Image.Image, name: str, max_pixels: int, max_bytes: int) -> np.ndarray:
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image too large ({width}x{height} = {width * height:,} pixels; limit {max_pixels:,})"
        )
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    needed = decode_bytes_needed(width, height, img.mode)
    if needed > max_bytes:
        raise ImageError(
            f"{name}: image too large to decode ({width}x{height} {img.mode} needs "
            f"{needed / 2**20:,.0f} MiB; limit {max_bytes / 2**20:,.0f} MiB)"
        )
    if img.mode == "F":
        raise ImageError(f"{name}: floating-point images are not supported; save it as 8- or 16-bit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            orientation = _orientation(img)
            pixels = _to_rgb(img, name)
    except ImageError:
        raise
    except MemoryError as err:
        raise ImageError(f"{name}: image too large to decode") from err
    except Exception as err:  # Pillow says "image file is truncated" / "broken data stream" here
        raise ImageError(f"{name}: corrupt or truncated image ({_why(err)})") from err
    if orientation in _ORIENT:
        pixels = np.ascontiguousarray(_ORIENT[orientation](pixels))
    return pixels


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright); a damaged EXIF block counts as upright."""
    try:
        value = img.getexif().get(0x0112, 1)
        return int(value) if isinstance(value, int) else 1
    except Exception:
        return 1


def _to_rgb(img: Image.Image, name: str) -> np.ndarray:
    """RGB uint8 pixels of a loaded image, converted a strip of rows at a time into one array, so the
    conversion never holds a second whole copy of the image."""
    width, height = img.size
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        strip = img.crop((0, top, width, min(top + rows, height)))
        out[top : top + strip.height] = _strip_rgb(strip, name)
    return out


def _strip_rgb(strip: Image.Image, name: str) -> np.ndarray:
    mode = strip.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return _from_array(np.asarray(strip), name)
    if mode == "RGB":
        return np.asarray(strip)
    if mode == "P" and "transparency" in strip.info:
        strip = strip.convert("RGBA")  # Pillow converts transparent palettes through RGBA only
    try:
        return np.asarray(strip.convert("RGB"))
    except ValueError as err:
        raise ImageError(f"{name}: cannot convert mode {mode} to RGB ({err})") from err


def _from_array(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype in (np.uint16, np.int32) and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        # 16-bit images: map the full 0..65535 range onto 0..255 (dividing by 257 maps 65535 to 255).
        arr = np.round(arr.astype(np.float32) / 257.0).astype(np.uint8)
    else:
        raise ImageError(
            f"{name}: pixel type {arr.dtype} is not supported; give uint8 RGB (or 16-bit unsigned) pixels"
        )
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif not (arr.ndim == 3 and arr.shape[2] == 3):
        raise ImageError(f"{name}: expected an HxW, HxWx3 or HxWx4 image array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{name}: image has no pixels (shape {arr.shape})")
    return np.ascontiguousarray(arr)
