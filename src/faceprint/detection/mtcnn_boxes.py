"""MTCNN's box math and resampling: NMS, box regression and squaring, the image pyramid's scales and
area-averaged levels, and bilinear crops in TensorFlow's ``crop_and_resize`` convention.

Plain NumPy (and one ``grid_sample``) on arrays, no nets and no threads: the detector (``mtcnn``) calls
these between its stages.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

PNET_CELL = 12  # P-Net's receptive field, in pixels of the scaled image


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices of the boxes non-maximum suppression keeps, best score first: "Fast NMS" (Bolya et al.,
    YOLACT 2019), the variant the ``mtcnn`` package uses, drops every box that overlaps a higher-scored
    box by more than ``threshold``, whether or not that box was itself dropped.

    Hand-written because torchvision is not a dependency and has neither this variant nor the "min" mode
    MTCNN's last stage needs (overlap = intersection / smaller area). Boxes are continuous (area = width x
    height). Boxes that do not intersect never suppress each other (as in the package, whose overlap is
    intersection / denominator: zero even where a degenerate box makes the denominator negative), so only
    pairs that overlap along x are compared: a sweep over the boxes sorted by x1 finds them. The work then
    grows with the overlapping pairs, not with all pairs.
    """
    order = np.argsort(-scores, kind="stable")
    b = boxes[order].astype(np.float32)  # image coordinates: float32 is exact enough, half the traffic
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = (x2 - x1) * (y2 - y1)
    n = b.shape[0]
    removed = np.zeros(n, dtype=bool)
    for first, second in _pairs_overlapping_in_x(x1, x2):
        w = np.minimum(x2[first], x2[second]) - np.maximum(x1[first], x1[second])
        h = np.minimum(y2[first], y2[second]) - np.maximum(y1[first], y1[second])
        inter = np.maximum(w, 0.0, out=w) * np.maximum(h, 0.0, out=h)
        pair_area = area[first], area[second]
        denominator = np.minimum(*pair_area) if mode == "min" else pair_area[0] + pair_area[1] - inter
        overlapping = (inter > threshold * denominator) & (inter > 0)
        removed[np.maximum(first, second)[overlapping]] = True  # the lower-scored box (later in order) goes
    return order[~removed]


def _pairs_overlapping_in_x(
    x1: np.ndarray, x2: np.ndarray, most: int = 1 << 20
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every two boxes whose x ranges overlap, once, as index arrays of at most ``most`` pairs."""
    n = x1.shape[0]
    by_x = np.argsort(x1, kind="stable")
    starts = x1[by_x]
    # boxes after each one in x1 order that start before it ends
    after = np.maximum(np.searchsorted(starts, x2[by_x], side="left") - np.arange(1, n + 1), 0)
    ends = np.cumsum(after)  # pairs up to and including each box
    lo, done = 0, 0
    while lo < n:
        hi = min(max(int(np.searchsorted(ends, done + most, side="right")), lo + 1), n)
        count = after[lo:hi]
        rows = np.repeat(np.arange(lo, hi), count)
        offsets = np.arange(rows.size) - np.repeat(np.cumsum(count) - count, count)
        yield by_x[rows], by_x[rows + 1 + offsets]
        lo, done = hi, int(ends[hi - 1])


def grouped_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float, mode: str = "union"
) -> np.ndarray:
    """NMS within each group (an image, or an image at one scale); indices into ``boxes``."""
    kept = []
    for g in np.unique(groups).tolist():
        members = np.flatnonzero(groups == g)
        kept.append(members[nms(boxes[members], scores[members], threshold, mode)])
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply R-/O-Net box offsets (dx1, dy1, dx2, dy2), scaled by the box's width + 1 and height + 1 (the
    original's inclusive-pixel sizes, kept by the ``mtcnn`` package)."""
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (side = the longer side)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + (w - side) * 0.5
    y1 = boxes[:, 1] + (h - side) * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def crop_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) float32 bilinear crops of ``boxes`` from an HxWx3 image.

    TensorFlow's ``crop_and_resize`` on box corners divided by the image size, as the ``mtcnn`` package
    calls it: ``size`` samples from x1 * (W - 1) / W to x2 * (W - 1) / W, and rows or columns sampled
    outside the image are grey (127.5, zero after normalisation). PyTorch's ``grid_sample`` does the
    sampling (OpenCV's warps quantise sample positions to 1/32 px and blend the border instead); its
    positions are float32, within 1e-4 px of the exact ones on a 1080p frame.
    """
    import torch
    from torch.nn import functional as F

    ih, iw = image.shape[:2]
    n = boxes.shape[0]
    t = np.arange(size) / (size - 1)
    xs = (boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t) * ((iw - 1) / iw)
    ys = (boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t) * ((ih - 1) / ih)
    grid = np.empty((n, size, size, 2), np.float32)  # grid_sample's (x, y) in [-1, 1] = pixel 0 .. W-1
    grid[..., 0] = (xs * (2.0 / max(iw - 1, 1)) - 1.0)[:, None, :]
    grid[..., 1] = (ys * (2.0 / max(ih - 1, 1)) - 1.0)[:, :, None]
    pixels = torch.from_numpy(np.asarray(image, np.float32)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        out = F.grid_sample(
            pixels,
            torch.from_numpy(grid).reshape(1, n * size, size, 2),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        out = out[0].reshape(3, n, size, size).permute(1, 2, 3, 0).numpy()
    outside_x = (xs < 0) | (xs > iw - 1)
    outside_y = (ys < 0) | (ys > ih - 1)
    out = np.ascontiguousarray(out)
    out[outside_y[:, :, None] | outside_x[:, None, :]] = 127.5
    return out


def area_resize_from_table(table: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-averaged resize of an image to (height, width, 3) float32, from its summed-area table
    (``cv2.integral``: (H + 1, W + 1, 3), int32 for a uint8 image, exact).

    What OpenCV's INTER_AREA computes (each output pixel the mean of the source area it covers, partial
    pixels weighted by the part covered), up to float rounding (within 3e-4 of it on 0-255 values): the
    integral of the piecewise-constant image over a rectangle is the table interpolated linearly at the
    rectangle's corners. Hand-written because no library resizes from a summed-area table; its cost
    grows with the output's rows times the image's width, not with the image's area. Output rows are
    computed a few at a time, so the float64 intermediates stay around a megabyte whatever the image.
    """
    rows_in, cols_in = table.shape[0] - 1, table.shape[1] - 1
    y0, fy = _cell_edges(rows_in, height)
    x0, fx = _cell_edges(cols_in, width)
    out = np.empty((height, width, 3), np.float32)
    step = max(1, (1 << 16) // table.shape[1])  # output rows per piece: about 64k table entries
    for top in range(0, height, step):
        rows = slice(top, min(top + step, height) + 1)  # the row edges of this piece's output rows
        lower = table[y0[rows]]
        edges = lower + (table[y0[rows] + 1] - lower) * fy[rows, None, None]  # the table at row edges
        strips = edges[1:] - edges[:-1]  # per output row: integrals from column 0
        lower = strips[:, x0]
        edges = lower + (strips[:, x0 + 1] - lower) * fx[None, :, None]
        out[top : rows.stop - 1] = (edges[:, 1:] - edges[:, :-1]) * ((height * width) / (rows_in * cols_in))
    return out


def _cell_edges(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each output cell's edge falls in the source (size_out + 1 edges): its pixel and fraction."""
    edges = np.arange(size_out + 1) * (size_in / size_out)
    pixel = np.minimum(edges.astype(np.intp), size_in - 1)
    return pixel, edges - pixel


def pyramid_scales(
    height: int, width: int, min_face_size: float, factor: float, max_pixels: float = math.inf
) -> list[float]:
    """Scales of the image pyramid: the first maps min_face_size to P-Net's 12 px window; levels stop
    before the shorter side drops under 12 px. No level has more than ``max_pixels`` pixels: a
    min_face_size under 12 px upsamples the image (by 12 / min_face_size per side), and 1 px faces on a
    4K frame would ask for a 1.2 Gpx level, so the first scale is capped and the smallest face searched
    becomes 12 x sqrt(pixels / max_pixels) px instead."""
    first = min(PNET_CELL / min_face_size, math.sqrt(max_pixels / (height * width)))
    scales = []
    side = min(height, width) * first
    while side >= PNET_CELL:
        scales.append(first * factor ** len(scales))
        side *= factor
    return scales
