"""Image decoding and validation: anything in, RGB uint8 HxWx3 out, or an ImageError naming the problem.

Pillow decodes rather than OpenCV because OpenCV silently returns a half-grey picture for a truncated
JPEG and accepts decompression bombs up to 2^30 pixels; Pillow raises on both and exposes EXIF and modes.
"""

from __future__ import annotations

import io as _io
import warnings
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceprint.errors import ImageError

ImageInput = str | PathLike | bytes | bytearray | np.ndarray | Image.Image

# About 10k x 10k: larger photos are almost always mistakes or decompression bombs, and decoding one
# would take gigabytes. Overridable per call.
MAX_PIXELS = 100_000_000


def load_image(source: ImageInput, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``source`` (path, encoded bytes, RGB ndarray or PIL image) to an RGB uint8 HxWx3 array.

    EXIF orientation is applied; grey, palette, RGBA/LA (alpha dropped), CMYK and 16-bit images are
    converted. Raises :class:`ImageError` naming the source for anything unreadable.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, "<array>")
    if isinstance(source, Image.Image):
        return _from_pil(source, "<PIL image>", max_pixels)
    if isinstance(source, bytes | bytearray):
        return _decode(bytes(source), "<bytes>", max_pixels)
    if isinstance(source, str | PathLike):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if not path.is_file():
            raise ImageError(f"{path}: not a file")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ImageError(f"{path}: cannot be read ({err.strerror or err})") from err
        return _decode(data, str(path), max_pixels)
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


def _decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below replaces Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(_io.BytesIO(data))
    except UnidentifiedImageError as err:
        raise ImageError(f"{name}: not an image, or a format faceprint cannot read") from err
    except Image.DecompressionBombError as err:
        raise ImageError(f"{name}: image too large ({err})") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{name}: corrupt image ({err})") from err
    return _from_pil(img, name, max_pixels)


def _from_pil(img: Image.Image, name: str, max_pixels: int) -> np.ndarray:
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image too large ({width}x{height} = {width * height:,} pixels; limit {max_pixels:,})"
        )
    if width == 0 or height == 0:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as err:
        raise ImageError(f"{name}: image too large ({err})") from err
    except (OSError, ValueError, SyntaxError) as err:
        # Pillow says "image file is truncated" / "broken data stream" here.
        raise ImageError(f"{name}: corrupt or truncated image ({err})") from err
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return _from_array(np.asarray(img), name)
    if img.mode == "F":
        raise ImageError(f"{name}: floating-point images are not supported; save it as 8- or 16-bit")
    if img.mode != "RGB":
        try:
            img = (
                img.convert("RGBA").convert("RGB")
                if "A" in img.mode or img.mode == "P"
                else img.convert("RGB")
            )
        except (OSError, ValueError) as err:
            raise ImageError(f"{name}: cannot convert mode {img.mode} to RGB ({err})") from err
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


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
