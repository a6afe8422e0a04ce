"""MTCNN face detector (Zhang et al. 2016) in PyTorch, with the weights the ``mtcnn`` package ships.

The cascade follows the original release (the MATLAB code and its Python port in davidsandberg/facenet):
an image pyramid through P-Net, NMS per scale (0.5) and across scales (0.7), box regression, square-ing;
R-Net on 24x24 crops, NMS 0.7, regression, square-ing; O-Net on 48x48 crops, regression, landmarks and a
final NMS (0.7, intersection over the smaller box). Internally boxes keep the original's 1-based inclusive
pixel convention so every rounding step matches it; results are converted once, at the end, to
continuous pixel coordinates (``image[y1:y2, x1:x2]`` is the region the nets saw).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from faceprint.errors import ImageError, ModelError
from faceprint.types import Detection

SELECTIONS = ("all", "largest", "central")
_PNET_CELL = 12  # P-Net's receptive field ...
_PNET_STRIDE = 2  # ... and its output stride, in pixels of the scaled image


def _pixels_in(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """First conv on (N, H, W, 3) uint8 RGB pixels. The training normalisation (x - 127.5) / 128 is folded
    into its weights (exact: the conv has no padding), so no pass over the image is spent on it."""
    w = conv.weight * (1.0 / 128.0)
    b = conv.bias - 127.5 * w.sum(dim=(1, 2, 3))
    return F.conv2d(x.permute(0, 3, 1, 2).float(), w, b)


def _face_prob(logits: torch.Tensor) -> torch.Tensor:
    """P(face) = softmax over (non-face, face) logits, taken as the sigmoid of their difference."""
    return torch.sigmoid(logits[:, 1] - logits[:, 0])


class PNet(nn.Module):
    """Fully convolutional proposal net: (N, H, W, 3) uint8 -> P(face) (N, H', W'), box offsets
    (N, 4, H', W'). Output cell (i, j) sees the 12x12 window at (2j, 2i)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)  # Keras "same" pooling
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.box, self.cls = nn.Conv2d(32, 4, 1), nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(_pixels_in(self.conv1, x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        # One-channel conv for the logit difference instead of softmax over two channels.
        w, b = self.cls.weight, self.cls.bias
        prob = torch.sigmoid(F.conv2d(x, w[1:] - w[:1], b[1:] - b[:1]))[:, 0]
        return prob, self.box(x)


class RNet(nn.Module):
    """Refinement net: (N, 24, 24, 3) uint8 -> P(face) (N,), box offsets (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.box, self.cls = nn.Linear(128, 4), nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(_pixels_in(self.conv1, x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).flatten(1)  # the dense weights were reordered for NCHW flatten
        x = self.prelu4(self.dense(x))
        return _face_prob(self.cls(x)), self.box(x)


class ONet(nn.Module):
    """Output net: (N, 48, 48, 3) uint8 -> P(face) (N,), box offsets (N, 4), landmarks (N, 10: 5 x, 5 y)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.box, self.landmarks, self.cls = nn.Linear(256, 4), nn.Linear(256, 10), nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(_pixels_in(self.conv1, x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).flatten(1)
        x = self.prelu5(self.dense(x))
        return _face_prob(self.cls(x)), self.box(x), self.landmarks(x)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices of the boxes greedy non-maximum suppression keeps, best score first.

    Hand-written because torchvision is not a dependency and its NMS has no "min" mode, which MTCNN's last
    stage needs (overlap = intersection / smaller area). Areas count pixels inclusively (+1) like the
    original. Each round is vectorised over the remaining boxes; rounds = boxes kept.
    """
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if mode == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def grouped_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float, mode: str = "union"
) -> np.ndarray:
    """NMS within each group (image, or image and scale) in one pass: groups are shifted apart so boxes of
    different groups never overlap."""
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(boxes.max() - boxes.min()) + 2.0
    return nms(boxes + (groups.astype(np.float64) * span)[:, None], scores, threshold, mode)


def regress(boxes: np.ndarray, offsets: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """Apply box regression offsets (dx1, dy1, dx2, dy2) scaled by the box's width and height."""
    extra = 1.0 if plus_one else 0.0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
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
    """(N, size, size, 3) uint8 crops of integer 1-based inclusive ``boxes``, zero outside the image.

    OpenCV's INTER_AREA resize per crop, as the original; the copy into a zero canvas happens only for
    boxes that cross the border.
    """
    ih, iw = image.shape[:2]
    out = np.zeros((boxes.shape[0], size, size, 3), dtype=np.uint8)
    for k, (bx1, by1, bx2, by2) in enumerate(boxes.astype(np.int64).tolist()):
        x0, y0, w, h = bx1 - 1, by1 - 1, bx2 - bx1 + 1, by2 - by1 + 1
        if w <= 0 or h <= 0:
            continue
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + w, iw), min(y0 + h, ih)
        if sx0 >= sx1 or sy0 >= sy1:
            continue
        patch = image[sy0:sy1, sx0:sx1]
        if (sx1 - sx0, sy1 - sy0) != (w, h):
            canvas = np.zeros((h, w, 3), dtype=np.uint8)
            canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = patch
            patch = canvas
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales of the image pyramid: the first maps min_face_size to P-Net's 12 px window; levels stop
    before the shorter side drops under 12 px."""
    first = _PNET_CELL / min_face_size
    scales = []
    side = min(height, width) * first
    while side >= _PNET_CELL:
        scales.append(first * factor ** len(scales))
        side *= factor
    return scales


class MTCNNNets:
    """The three nets as ONNX Runtime sessions (exported from the modules above, cached). Call with a
    net name and (N, H, W, 3) uint8 RGB pixels; returns that net's outputs as numpy arrays."""

    def __init__(self, threads: int | None) -> None:
        import onnxruntime as ort

        from faceprint.detection.mtcnn_weights import load_onnx, load_state_dict

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, one per core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sessions = {}
        for key, module, size in (("pnet", PNet(), 12), ("rnet", RNet(), 24), ("onet", ONet(), 48)):
            module.load_state_dict(load_state_dict(key))
            dynamic = {0: "n", 1: "h", 2: "w"} if key == "pnet" else {0: "n"}
            example = torch.zeros((1, size, size, 3), dtype=torch.uint8)
            graph = load_onnx(key, module, example, dynamic)
            self.sessions[key] = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, key: str, pixels: np.ndarray) -> list[np.ndarray]:
        return self.sessions[key].run(None, {"x": pixels})


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
    (centre nearest the image centre); threads: CPU threads for the nets (None: the runtime's default).
    """

    name = "mtcnn"

    def __init__(
        self,
        min_face_size: float = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        select: str = "all",
        threads: int | None = None,
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
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.select = select
        self.threads = threads
        self._runtime: MTCNNNets | None = None
        self._lock = threading.Lock()

    def load(self) -> MTCNNNets:
        """Load the nets now (thread-safe, once); otherwise the first detection does."""
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    self._runtime = MTCNNNets(self.threads)
        return self._runtime

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces in one RGB uint8 HxWx3 image, highest score first (``select`` applied)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """``detect`` for several images; same-size images share each P-Net forward, and the R-Net and
        O-Net crops of all images go through one forward each."""
        for i, image in enumerate(images):
            _check_image(image, i)
        results: list[list[Detection]] = [[] for _ in images]
        usable = [
            i for i, im in enumerate(images) if min(im.shape[:2]) >= max(_PNET_CELL, self.min_face_size)
        ]
        if not usable:
            return results
        nets = self.load()
        cands = self._propose(nets, images, usable)
        cands = self._refine(nets, images, cands)
        cands, landmarks = self._output(nets, images, cands)
        for row in range(cands.image.shape[0]):
            x1, y1, x2, y2 = cands.boxes[row].tolist()
            # 1-based inclusive -> continuous pixel coordinates (landmarks already are).
            det = Detection((x1 - 1.0, y1 - 1.0, x2, y2), float(cands.scores[row]), landmarks[row])
            results[int(cands.image[row])].append(det)
        return [self._choose(dets, images[i].shape) for i, dets in enumerate(results)]

    def _propose(self, nets: MTCNNNets, images: Sequence[np.ndarray], usable: list[int]) -> _Candidates:
        """P-Net over each image's pyramid; NMS per scale, then across scales; regress; square."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for i in usable:
            by_size.setdefault(images[i].shape[:2], []).append(i)
        found: list[_Candidates] = []
        offsets: list[np.ndarray] = []
        for (h, w), members in by_size.items():
            for scale in pyramid_scales(h, w, self.min_face_size, self.factor):
                hs, ws = int(np.ceil(h * scale)), int(np.ceil(w * scale))
                batch = np.stack(
                    [cv2.resize(images[i], (ws, hs), interpolation=cv2.INTER_AREA) for i in members]
                )
                prob, reg = nets("pnet", batch)
                n, ys, xs = np.nonzero(prob >= self.thresholds[0])
                if n.size == 0:
                    continue
                # Each output cell sees a 12x12 window at stride 2 (1-based inclusive corners), mapped back
                # to the input image and truncated like the original.
                grid = np.stack([xs, ys, xs, ys], axis=1).astype(np.float64) * _PNET_STRIDE
                grid[:, :2] += 1.0
                grid[:, 2:] += _PNET_CELL
                cand = _Candidates(np.asarray(members)[n], np.fix(grid / scale), prob[n, ys, xs])
                keep = grouped_nms(cand.boxes, cand.scores, n, 0.5)
                found.append(cand.take(keep))
                offsets.append(reg[n, :, ys, xs][keep])
        if not found:
            return _Candidates(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, np.float32))
        cands = _Candidates(
            np.concatenate([c.image for c in found]),
            np.concatenate([c.boxes for c in found]),
            np.concatenate([c.scores for c in found]),
        )
        reg = np.concatenate(offsets)
        keep = grouped_nms(cands.boxes, cands.scores, cands.image, 0.7)
        cands, reg = cands.take(keep), reg[keep]
        # The original regresses P-Net boxes with width x2 - x1 (no +1), unlike the later stages.
        cands.boxes = np.fix(square(regress(cands.boxes, reg, plus_one=False)))
        return cands

    def _refine(self, nets: MTCNNNets, images: Sequence[np.ndarray], cands: _Candidates) -> _Candidates:
        """R-Net on 24x24 crops of all candidates at once; threshold; NMS per image; regress; square."""
        if cands.image.size == 0:
            return cands
        prob, reg = nets("rnet", _crops(images, cands, 24))
        passed = np.flatnonzero(prob > self.thresholds[1])
        cands = _Candidates(cands.image[passed], cands.boxes[passed], prob[passed])
        keep = grouped_nms(cands.boxes, cands.scores, cands.image, 0.7)
        cands = cands.take(keep)
        cands.boxes = np.fix(square(regress(cands.boxes, reg[passed][keep])))
        return cands

    def _output(
        self, nets: MTCNNNets, images: Sequence[np.ndarray], cands: _Candidates
    ) -> tuple[_Candidates, np.ndarray]:
        """O-Net on 48x48 crops of all candidates at once; threshold; landmarks; regress; NMS ("min")."""
        if cands.image.size == 0:
            return cands, np.zeros((0, 5, 2), np.float32)
        prob, reg, marks = nets("onet", _crops(images, cands, 48))
        passed = np.flatnonzero(prob > self.thresholds[2])
        cands = _Candidates(cands.image[passed], cands.boxes[passed], prob[passed])
        boxes = cands.boxes
        # Landmarks are fractions of the crop (five x, then five y); -1 turns the 1-based corner 0-based.
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = marks[passed, :5] * w + boxes[:, :1] - 1
        ys = marks[passed, 5:] * h + boxes[:, 1:2] - 1
        landmarks = np.stack([xs, ys], axis=2).astype(np.float32)
        cands.boxes = regress(boxes, reg[passed])
        keep = grouped_nms(cands.boxes, cands.scores, cands.image, 0.7, mode="min")
        return cands.take(keep), landmarks[keep]

    def _choose(self, dets: list[Detection], shape: tuple[int, ...]) -> list[Detection]:
        dets.sort(key=lambda d: d.score, reverse=True)
        if self.select == "all" or not dets:
            return dets
        if self.select == "largest":
            return [max(dets, key=lambda d: d.width * d.height)]
        cy, cx = shape[0] / 2.0, shape[1] / 2.0
        return [
            min(
                dets,
                key=lambda d: ((d.box[0] + d.box[2]) / 2 - cx) ** 2 + ((d.box[1] + d.box[3]) / 2 - cy) ** 2,
            )
        ]


def _crops(images: Sequence[np.ndarray], cands: _Candidates, size: int) -> np.ndarray:
    """Crops of every candidate, in candidate order, whichever image each comes from."""
    out = np.empty((cands.image.shape[0], size, size, 3), dtype=np.uint8)
    for i in np.unique(cands.image).tolist():
        rows = np.flatnonzero(cands.image == i)
        out[rows] = crop_resize(images[i], cands.boxes[rows], size)
    return out


def _check_image(image: object, index: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (
            f"{image.dtype} array of shape {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise ImageError(f"MTCNN: image {index} must be an RGB uint8 HxWx3 array, got {got}")
