"""MTCNN face detector (Zhang et al. 2016) with the weights the ``mtcnn`` package ships.

The cascade is the one the ``mtcnn`` package (ipazc/mtcnn 1.0.0, whose weights these are) publishes, so
that both compute the same thing and differ only by float arithmetic: an image pyramid (area-averaged,
level sizes truncated) through P-Net, each cell's 12x12 window regressed at once, NMS per scale (0.5) and
across scales (0.7), square-ing; R-Net on 24x24 crops, regression, threshold, NMS 0.7, square-ing; O-Net
on 48x48 crops, landmarks, regression, threshold, final NMS (0.7, intersection over the smaller box).
Boxes stay float between stages (no integer truncation); crops are bilinear samples of the float image
(TensorFlow's ``crop_and_resize`` convention), grey outside the image. Coordinates are pixel positions
as that package reports them (x1, y1, x2, y2; landmarks five (x, y)).

This module is the detector: its stages and the pyramid levels' pieces of work. The box math and
resampling live in ``mtcnn_boxes``, the nets in ``mtcnn_nets`` (run in eager PyTorch, which was faster
than ONNX Runtime on them: docs/detection.md), and the helper threads a detection spreads its pieces
over (pyramid levels, row bands of P-Net's output, chunks of R-/O-Net crops) in ``taskpool``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from faceprint import subject
from faceprint.detection import MAX_WORKING_PIXELS, scale_detection, working_copy
from faceprint.detection.mtcnn_boxes import (
    PNET_CELL,
    area_resize_from_table,
    crop_resize,
    grouped_nms,
    pyramid_scales,
    regress,
    square,
)
from faceprint.detection.mtcnn_phantoms import phantoms, second_look
from faceprint.detection.taskpool import TaskPool
from faceprint.errors import ImageError, ModelError
from faceprint.models import Lazy
from faceprint.types import Detection

SELECTIONS = ("all", "largest", "central")
_PNET_STRIDE = 2  # P-Net's output stride, in pixels of the scaled image
_BAND_CELLS = 64 * 512  # P-Net output cells per band of rows (see _Level.bands)
# Levels smaller than this (a fraction of the image's side) are area-averaged from a summed-area table
# instead of by OpenCV, whose INTER_AREA reads the whole image for every level whatever its scale.
_TABLE_SCALE = 0.13
# Crops per R-/O-Net forward, most and fewest: per crop, big batches ran slower than middling ones.
# Chunks are spread over threads, but not below 4 O-Net crops: two threads calling small ops wait on each
# other for the GIL, so a few crops run faster as one chunk (figures: docs/detection.md).
_CHUNK_CROPS = {"rnet": (96, 16), "onet": (24, 4)}


class MTCNNNets:
    """The three nets as PyTorch modules (``mtcnn_nets``, converted weights from the cache). Call with a
    net name and (N, H, W, 3) float32 RGB pixel values; returns P(face) and that net's other outputs as
    numpy arrays. Eager PyTorch (oneDNN), not ONNX Runtime: their 3-channel first convs and small channel
    counts suit oneDNN's kernels. ``pool`` runs independent pieces of work (pyramid levels, chunks of
    crops) on ``threads`` threads."""

    def __init__(self, threads: int | None) -> None:
        import torch

        from faceprint.detection.mtcnn_nets import build
        from faceprint.detection.mtcnn_weights import NETS, load_state_dict
        from faceprint.models import torch_device

        self.device = torch_device()  # "cpu" unless a CUDA device is there (models.device)
        self.modules = {key: build(key, load_state_dict(key)).to(self.device) for key in NETS}
        self.threads = threads or torch.get_num_threads()
        self.pool = TaskPool.shared(self.threads)

    def __call__(self, key: str, pixels: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            # On the CPU, .to() and .cpu() return the same tensors: nothing is copied.
            out = self.modules[key](torch.from_numpy(pixels).to(self.device))
            logit, *rest = (t.cpu().numpy() for t in out)
        # P(face) as the two-way softmax computes it in float32 (saturating to exactly 1.0 alike); exp
        # overflowing to inf for a very negative logit gives the right probability, 0, so no warning.
        with np.errstate(over="ignore"):
            prob = np.float32(1.0) / (np.float32(1.0) + np.exp(-logit))
        return [prob, *rest]

    def chunked(
        self, key: str, pixels: Mapping[int, np.ndarray], cands: _Candidates, size: int
    ) -> list[np.ndarray]:
        """Net ``key`` on the ``size`` crops of every candidate, in chunks spread over the pool."""
        n = cands.image.shape[0]
        most, fewest = _CHUNK_CROPS[key]
        count = max(-(-n // most), min(self.threads, n // fewest), 1)
        count = -(-count // self.threads) * self.threads if count > self.threads else count  # no last odd one
        chunks = np.array_split(np.arange(n), count)
        outs = self.pool.map(lambda rows: self(key, _crops(pixels, cands.take(rows), size)), chunks)
        return [np.concatenate(parts) for parts in zip(*outs, strict=True)]


@dataclass
class _Candidates:
    """Boxes in flight between stages, all images together; ``image`` says whose each row is."""

    image: np.ndarray  # (n,) int64
    boxes: np.ndarray  # (n, 4) float64, 1-based inclusive
    scores: np.ndarray  # (n,)

    def take(self, idx: np.ndarray) -> _Candidates:
        return _Candidates(self.image[idx], self.boxes[idx], self.scores[idx])


class MTCNNDetector:
    """MTCNN with the original weights. Knobs as in the original release.

    min_face_size: smallest face (pixels) searched for; thresholds: face-probability cut of P-, R- and
    O-Net; factor: pyramid scale step; select: "all" faces, the "largest" one, or the "central" one
    (centre nearest the image centre); threads: how many helper threads (shared by detectors of the same
    count) a detection spreads its work over, each running torch ops on one thread (None: torch's
    thread count; see ``_TaskPool``); max_pixels: images with more pixels are detected on an
    area-downscaled copy of this many (``faceprint.detection.working_copy``), boxes mapped back;
    phantom_filter: drop boxes that a second look at the final box shows to be background objects
    (``mtcnn_phantoms``); False gives exactly the ``mtcnn`` package's cascade (its parity tests use it).
    """

    name = "mtcnn"
    version = "4"  # bump when a code change moves boxes or landmarks (history: CHANGELOG.md)

    def __init__(
        self,
        min_face_size: float = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        select: str = "all",
        threads: int | None = None,
        max_pixels: int = MAX_WORKING_PIXELS,
        phantom_filter: bool = True,
    ) -> None:
        if (
            isinstance(min_face_size, bool)
            or not isinstance(min_face_size, (int, float))
            or min_face_size < 1
        ):
            raise ModelError(f"MTCNN: min_face_size must be a number of pixels >= 1, got {min_face_size!r}")
        thresholds = tuple(thresholds)
        if len(thresholds) != 3 or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0 for t in thresholds
        ):
            raise ModelError(f"MTCNN: thresholds must be three probabilities in [0, 1], got {thresholds!r}")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.1 <= factor < 1.0:
            raise ModelError(f"MTCNN: factor (pyramid scale step) must be in [0.1, 1), got {factor!r}")
        if select not in SELECTIONS:
            raise ModelError(f"MTCNN: select must be one of {', '.join(SELECTIONS)}, got {select!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ModelError(f"MTCNN: threads must be None or an integer >= 1, got {threads!r}")
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < PNET_CELL**2:
            raise ModelError(f"MTCNN: max_pixels must be an integer >= {PNET_CELL**2}, got {max_pixels!r}")
        if not isinstance(phantom_filter, bool):
            raise ModelError(f"MTCNN: phantom_filter must be True or False, got {phantom_filter!r}")
        self.min_face_size = float(min_face_size)
        self.phantom_filter = phantom_filter
        self.max_pixels = max_pixels
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.select = select
        self.threads = threads
        self._runtime = Lazy(lambda: MTCNNNets(self.threads))

    def load(self) -> MTCNNNets:
        """Load the nets now (thread-safe, once); otherwise the first detection does."""
        return self._runtime.get()

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces in one RGB uint8 HxWx3 image, highest score first (``select`` applied)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """``detect`` for several images; same-size images share each P-Net forward, and the R-Net and
        O-Net crops of all images share the chunked forwards. Images over ``max_pixels`` are detected on
        a downscaled copy (see ``faceprint.detection.MAX_WORKING_PIXELS``)."""
        for i, image in enumerate(images):
            _check_image(image, i)
        copies = [working_copy(image, self.max_pixels) for image in images]
        work = [copy for copy, _, _ in copies]
        results: list[list[Detection]] = [[] for _ in images]
        usable = [i for i, im in enumerate(work) if min(im.shape[:2]) >= max(PNET_CELL, self.min_face_size)]
        if not usable:
            return results
        nets = self.load()
        pixels = {i: work[i].astype(np.float32) for i in usable}  # resampling happens in float
        cands = self._propose(nets, {i: work[i] for i in usable}, pixels)
        cands = self._refine(nets, pixels, cands)
        cands, landmarks = self._output(nets, pixels, cands)
        if self.phantom_filter and cands.image.size:
            real = np.flatnonzero(~self._phantoms(nets, pixels, cands))
            cands, landmarks = cands.take(real), landmarks[real]
        # The last regression can shrink a box below the size asked for (the package reports a 12x16 px
        # "face" at min_face_size 20 in noise): such boxes are not what the caller searched for.
        sides = np.maximum(cands.boxes[:, 2] - cands.boxes[:, 0], cands.boxes[:, 3] - cands.boxes[:, 1])
        for row in np.flatnonzero(sides >= self.min_face_size).tolist():
            i = int(cands.image[row])
            det = Detection(tuple(cands.boxes[row].tolist()), float(cands.scores[row]), landmarks[row])
            results[i].append(scale_detection(det, *copies[i][1:]))
        return [self._choose(dets, images[i].shape) for i, dets in enumerate(results)]

    def _propose(
        self, nets: MTCNNNets, images: dict[int, np.ndarray], pixels: dict[int, np.ndarray]
    ) -> _Candidates:
        """P-Net over each image's pyramid; regress each window; NMS per scale, then across scales (levels
        in pyramid order, so ties break as in the package); square. The pool works through the summed-area
        tables small levels need, every level's resize, then P-Net on row bands of every level, then each
        level's windows, largest levels first."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in pixels.items():
            by_size.setdefault(image.shape[:2], []).append(i)
        levels: list[_Level] = []
        tables: list[_Tables] = []
        for (h, w), members in by_size.items():
            scales = pyramid_scales(h, w, self.min_face_size, self.factor, self.max_pixels)
            small = any(scale < _TABLE_SCALE for scale in scales)
            table = _Tables([images[i] for i in members]) if small else None
            tables += [table] if table else []
            levels += [
                _Level(
                    [pixels[i] for i in members],
                    np.asarray(members),
                    scale,
                    table if scale < _TABLE_SCALE else None,
                )
                for scale in scales
            ]
        largest_first = sorted(levels, key=lambda level: -level.cells)
        tasks: list[Callable[[], None]] = [table.compute for table in tables]
        tasks += [level.resize for level in largest_first]
        tasks += [partial(level.run_band, nets, band) for level in largest_first for band in level.bands]
        tasks += [partial(level.find_windows, self.thresholds[0]) for level in largest_first]
        nets.pool.map(lambda task: task(), tasks)
        kept = [level.candidates for level in levels if level.candidates is not None]
        if not kept:
            return _Candidates(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, np.float32))
        cands = _Candidates(
            np.concatenate([c.image for c in kept]),
            np.concatenate([c.boxes for c in kept]),
            np.concatenate([c.scores for c in kept]),
        )
        cands = cands.take(grouped_nms(cands.boxes, cands.scores, cands.image, 0.7))
        cands.boxes = square(cands.boxes)
        return cands

    def _refine(self, nets: MTCNNNets, pixels: Mapping[int, np.ndarray], cands: _Candidates) -> _Candidates:
        """R-Net on 24x24 crops of all candidates at once; regress; threshold; NMS per image; square."""
        if cands.image.size == 0:
            return cands
        prob, reg = nets.chunked("rnet", pixels, cands, 24)
        passed = np.flatnonzero(prob > self.thresholds[1])
        cands = _Candidates(cands.image[passed], regress(cands.boxes[passed], reg[passed]), prob[passed])
        cands = cands.take(grouped_nms(cands.boxes, cands.scores, cands.image, 0.7))
        cands.boxes = square(cands.boxes)
        return cands

    def _output(
        self, nets: MTCNNNets, pixels: Mapping[int, np.ndarray], cands: _Candidates
    ) -> tuple[_Candidates, np.ndarray]:
        """O-Net on 48x48 crops of all candidates at once; landmarks; regress; threshold; NMS ("min")."""
        if cands.image.size == 0:
            return cands, np.zeros((0, 5, 2), np.float32)
        prob, reg, marks = nets.chunked("onet", pixels, cands, 48)
        passed = np.flatnonzero(prob > self.thresholds[2])
        boxes = cands.boxes[passed]
        # Landmarks are fractions of the crop (five x, then five y), placed as the package does.
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = marks[passed, :5] * w + boxes[:, :1] - 1
        ys = marks[passed, 5:] * h + boxes[:, 1:2] - 1
        landmarks = np.stack([xs, ys], axis=2).astype(np.float32)
        cands = _Candidates(cands.image[passed], regress(boxes, reg[passed]), prob[passed])
        keep = grouped_nms(cands.boxes, cands.scores, cands.image, 0.7, mode="min")
        return cands.take(keep), landmarks[keep]

    def _phantoms(self, nets: MTCNNNets, pixels: Mapping[int, np.ndarray], cands: _Candidates) -> np.ndarray:
        """Which final boxes a second O-Net look shows to be background objects (``mtcnn_phantoms``)."""
        images = np.repeat(cands.image, 5)  # five windows per box, in box order

        def onet(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            looks = _Candidates(images, boxes, np.zeros(len(boxes), np.float32))
            prob, _, marks = nets.chunked("onet", pixels, looks, 48)
            return prob, marks

        return phantoms(*second_look(cands.boxes, onet))

    def _choose(self, dets: list[Detection], shape: tuple[int, ...]) -> list[Detection]:
        """Every face, highest score first, or only the subject by the ``select`` strategy."""
        dets.sort(key=lambda d: d.score, reverse=True)
        if self.select == "all" or not dets:
            return dets
        return [subject.pick(dets, self.select, shape)]


class _Tables:
    """Summed-area tables of same-size uint8 images (exact in int32), for their small pyramid levels;
    computed by one piece of work, handed out before the resizes that wait for it."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images
        self.tables: list[np.ndarray] | None = None
        self.ready = threading.Event()

    def compute(self) -> None:
        try:
            self.tables = [cv2.integral(np.ascontiguousarray(im), sdepth=cv2.CV_32S) for im in self.images]
        finally:
            self.ready.set()


class _Level:
    """One pyramid level of same-size images, computed in pieces by the pool's threads: ``resize`` (from
    ``tables`` when given), then ``run_band`` for each band of P-Net output rows, then ``find_windows``.
    Each piece waits for the one before it, which was handed out earlier, so the wait always ends."""

    def __init__(
        self, images: list[np.ndarray], members: np.ndarray, scale: float, tables: _Tables | None = None
    ) -> None:
        self.images, self.members, self.scale, self.tables = images, members, scale, tables
        h, w = images[0].shape[:2]
        self.height, self.width = int(h * scale), int(w * scale)  # truncated, like TensorFlow's resize
        # P-Net's output grid: 3x3 conv, 2x2 pool (ceil), two 3x3 convs
        self.rows, self.cols = (self.height - 1) // 2 - 4, (self.width - 1) // 2 - 4
        self.cells = self.rows * self.cols * len(images)
        # Row ranges of P-Net's output, about _BAND_CELLS cells each. P-Net is fully convolutional, so a
        # band of output rows needs only input rows 2 * first .. 2 * last + 11 and comes out the same as
        # that part of the whole map. Bands keep the intermediate maps in the CPU's cache and split big
        # levels between threads.
        step = max(1, _BAND_CELLS // max(self.cols * len(images), 1))
        self.bands = [(r, min(r + step, self.rows)) for r in range(0, self.rows, step)]
        self.pixels: np.ndarray | None = None
        self.resized = threading.Event()
        self.maps: dict[int, list[np.ndarray]] = {}
        self.mapped = threading.Event()
        self._bands_left = len(self.bands)
        if not self.bands:  # no output row (a level under 11 px): nothing for find_windows to wait for
            self.mapped.set()
        self._lock = threading.Lock()
        self.candidates: _Candidates | None = None

    def resize(self) -> None:
        try:
            # Area-averaged from the image itself, as the mtcnn package does (averaging from a smaller
            # level instead moved boxes to IoU 0.80 with the package's).
            if self.tables is not None:
                self.tables.ready.wait()
                if self.tables.tables is None:  # computing them failed and reports why
                    return
                resized = [area_resize_from_table(t, self.height, self.width) for t in self.tables.tables]
            else:
                size = (self.width, self.height)
                resized = [
                    im if im.shape[1::-1] == size else cv2.resize(im, size, interpolation=cv2.INTER_AREA)
                    for im in self.images
                ]
            # reshape, not [None]: a zero batch stride makes torch run the nets in NCHW, much slower here
            self.pixels = np.stack(resized) if len(resized) > 1 else resized[0].reshape(1, *resized[0].shape)
        finally:
            self.resized.set()

    def run_band(self, nets: MTCNNNets, band: tuple[int, int]) -> None:
        try:
            self.resized.wait()
            if self.pixels is not None:  # else the resize failed and reports why
                first, last = band
                rows = self.pixels[:, 2 * first : min(2 * last + 10, self.height)]
                self.maps[first] = nets("pnet", np.ascontiguousarray(rows))
        finally:
            with self._lock:
                self._bands_left -= 1
                if self._bands_left == 0:
                    self.mapped.set()

    def find_windows(self, threshold: float) -> None:
        """Windows over the P-Net threshold, regressed and unscaled; NMS (0.5) per image."""
        self.mapped.wait()
        if not self.maps or len(self.maps) != len(self.bands):  # no rows, or a failed piece reports why
            return
        bands = [self.maps[first] for first in sorted(self.maps)]
        prob = np.concatenate([band[0] for band in bands], axis=1)  # (N, rows, cols)
        reg = np.concatenate([band[1] for band in bands], axis=1)  # (N, rows, cols, 4)
        self.maps.clear()
        n, ys, xs = np.nonzero(prob > threshold)
        if n.size == 0:
            return
        # Each output cell sees a 12x12 window at stride 2; the package's corners are (2x + 1, 2y + 1) and
        # (2x + 12, 2y + 12), regressed by 11 px per unit offset, then unscaled.
        corners = np.stack([xs, ys, xs, ys], axis=1).astype(np.float64) * _PNET_STRIDE
        corners[:, :2] += 1.0
        corners[:, 2:] += PNET_CELL
        boxes = (corners + reg[n, ys, xs] * (PNET_CELL - 1.0)) / self.scale
        cand = _Candidates(self.members[n], boxes, prob[n, ys, xs])
        self.candidates = cand.take(grouped_nms(cand.boxes, cand.scores, n, 0.5))


def _crops(pixels: Mapping[int, np.ndarray], cands: _Candidates, size: int) -> np.ndarray:
    """Crops of every candidate, in candidate order, whichever image each comes from."""
    out = np.empty((cands.image.shape[0], size, size, 3), dtype=np.float32)
    for i in np.unique(cands.image).tolist():
        rows = np.flatnonzero(cands.image == i)
        out[rows] = crop_resize(pixels[i], cands.boxes[rows], size)
    return out


def _check_image(image: object, index: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (
            f"{image.dtype} array of shape {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise ImageError(f"MTCNN: image {index} must be an RGB uint8 HxWx3 array, got {got}")
