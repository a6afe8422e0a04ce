"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch.

The network (from dlib's ``dnn_face_recognition_ex.cpp``): a 7x7/2 conv with 32 filters, affine, relu,
3x3/2 max pool, then residual blocks of two 3x3 convs each with affine layers in place of batch norm
(32 x3, 64 x4, 128 x3, 256 x3, 256 x1; the first block of each stage after the first halves the size
with a stride-2 conv and a 2x2 average pool on the skip path), a global average and a 128x256 linear map
without bias. :class:`DlibResNet` is the one definition: the dlib file layout, the loading of the weights
and the inference variants (affine layers folded into the convs, the ONNX export) all derive from it.

Weights come from our own reader of dlib's format (:mod:`faceprint.embedding.dlib_format`), after the
file's SHA-256 is checked, and are cached as a plain state_dict keyed by that hash.
"""

from __future__ import annotations

import copy
import os
import pickle
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceprint.embedding import dlib_format as fmt
from faceprint.errors import ModelError
from faceprint.models import WeightFile, cache_dir
from faceprint.models import export_onnx as export_onnx_file

WEIGHTS = WeightFile(
    package="face_recognition_models",
    relpath="models/dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    pip_name="face-recognition-models",
)
INPUT_SIZE = 150
# (channels, blocks, whether the stage's first block downsamples), from the input outwards.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
# Landmarks (faceprint order: image-left eye, image-right eye, nose, image-left and image-right mouth
# corner) where dlib's own get_face_chip(size=150, padding=0.25) puts them, fitted over 1000 LFW faces by
# bench/fit_dlib_template.py: faceprint's MTCNN landmarks mapped through dlib's chip transform of the same
# face, averaged (our chips then embed 0.099 mean / 0.16 p95 from dlib's chips of the same faces,
# L2-normalised; the rest is where MTCNN and dlib's predictor disagree on each face, not the template).
TEMPLATE = np.array(
    [[47.22, 45.37], [101.64, 45.29], [74.23, 77.41], [50.24, 105.09], [98.32, 105.05]], dtype=np.float32
)

Runtime = Literal["auto", "onnx", "torch"]


class Affine(nn.Module):
    """dlib's affine layer, y = x * scale + shift per channel; trainable (dlib's frozen batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum has the larger extent in every dimension, the smaller operand is zero
    outside its own (channels padded at the end, rows/columns at the bottom/right)."""
    if a.shape == b.shape:
        return a + b
    shape = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:], strict=True)]

    def grow(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, shape[2] - w, 0, shape[1] - h, 0, shape[0] - c))

    return grow(a) + grow(b)


class ResBlock(nn.Module):
    """dlib's ``ares`` / ``ares_down``: relu(add_prev(affine(conv(relu(affine(conv(x)))), skip(x))))."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        # dlib pads a stride-1 conv by k/2 and a strided one not at all.
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.aff2 = Affine(cout)
        self.pool = nn.AvgPool2d(2, 2) if down else nn.Identity()
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        return F.relu(add_prev(y, self.pool(x)))

    def dlib_layers(self) -> Iterator[tuple[fmt.Wrapper, nn.Module | None]]:
        yield "tag", None
        yield from (("con", self.conv1), ("affine", self.aff1), ("relu", None))
        yield from (("con", self.conv2), ("affine", self.aff2))
        if self.down:
            yield from (("tag", None), ("skip", None), ("avg_pool", self.pool))
        yield from (("add_prev", None), ("relu", None))


class DlibResNet(nn.Module):
    """(N, 3, 150, 150) float RGB in 0..255 -> (N, 128) raw descriptors, as dlib computes them.

    Trainable as it stands: no batch norm (dlib's affine layers are plain learnable scale and shift), so
    ``train()`` and ``eval()`` compute the same function.
    """

    def __init__(self) -> None:
        super().__init__()
        # Per-channel means from the file's input layer (R, G, B); dlib then divides by 256.
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 32, 7, stride=2)
        self.aff = Affine(32)
        self.pool = nn.MaxPool2d(3, 2)
        blocks, cin = [], 32
        for cout, count, down in STAGES:
            for i in range(count):
                blocks.append(ResBlock(cin, cout, down and i == 0))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.aff(self.conv((x - self.mean) / 256.0))))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    def dlib_layers(self) -> list[tuple[fmt.Wrapper, nn.Module | None]]:
        """dlib's wrappers from the input outwards, with the module each layer record loads into."""
        out: list[tuple[fmt.Wrapper, nn.Module | None]] = [
            ("con", self.conv),
            ("affine", self.aff),
            ("relu", None),
            ("max_pool", self.pool),
        ]
        for block in self.blocks:
            out.extend(block.dlib_layers())
        return [*out, ("avg_pool", None), ("fc", self.fc)]

    def dlib_layout(self) -> list[fmt.Wrapper]:
        """The wrapper sequence as the file stores it, outermost first."""
        return [kind for kind, _ in reversed(self.dlib_layers())]


def _pool_geometry(module: nn.Module | None) -> tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]]:
    if module is None:  # dlib's avg_pool_everything: size 0 means the whole plane
        return "avg", (0, 0), (1, 1), (0, 0)
    kind = "max" if isinstance(module, nn.MaxPool2d) else "avg"
    pair = nn.modules.utils._pair
    return kind, pair(module.kernel_size), pair(module.stride), pair(module.padding)


def _load_layer(path: Path, index: int, kind: str, module: nn.Module | None, layer: fmt.Layer) -> None:
    """Copy one parsed dlib layer into its module, checking that it is the layer the type says."""

    def mismatch(found: object) -> ModelError:
        return ModelError(f"{path}: layer {index} from the input should be {kind} {module}, found {found}")

    if isinstance(layer, fmt.Conv) and isinstance(module, nn.Conv2d):
        if (
            layer.weight.shape != tuple(module.weight.shape)
            or layer.stride != module.stride
            or layer.padding != module.padding
            or layer.bias is None
        ):
            raise mismatch(f"con {layer.weight.shape} stride {layer.stride} padding {layer.padding}")
        module.weight.data.copy_(torch.from_numpy(layer.weight))
        module.bias.data.copy_(torch.from_numpy(layer.bias))
    elif isinstance(layer, fmt.Affine) and isinstance(module, Affine):
        if layer.gamma.shape != tuple(module.weight.shape) or layer.beta.shape != layer.gamma.shape:
            raise mismatch(f"affine of {layer.gamma.shape} channels")
        module.weight.data.copy_(torch.from_numpy(layer.gamma))
        module.bias.data.copy_(torch.from_numpy(layer.beta))
    elif isinstance(layer, fmt.Linear) and isinstance(module, nn.Linear):
        if layer.weight.shape != tuple(module.weight.shape) or layer.bias is not None:
            raise mismatch(f"fc {layer.weight.shape} with{'out' if layer.bias is None else ''} bias")
        module.weight.data.copy_(torch.from_numpy(layer.weight))
    elif isinstance(layer, fmt.Pool):
        if (layer.kind, layer.size, layer.stride, layer.padding) != _pool_geometry(module):
            raise mismatch(layer)
    elif not (kind == "relu" and isinstance(layer, fmt.Relu)) and not (
        kind == "add_prev" and isinstance(layer, fmt.AddPrev)
    ):
        raise mismatch(type(layer).__name__)


def parse_dlib_file(path: Path | str) -> DlibResNet:
    """Build the network from a dlib .dat file (no checksum check: see :func:`load_dlib_resnet`)."""
    path = Path(path)
    model = DlibResNet()
    net = fmt.read_network(path, model.dlib_layout())
    if net.input.size not in (None, (INPUT_SIZE, INPUT_SIZE)):
        raise ModelError(f"{path}: the network takes {net.input.size} images, not {INPUT_SIZE}x{INPUT_SIZE}")
    model.mean.copy_(torch.tensor(net.input.mean, dtype=torch.float32).view(1, 3, 1, 1))
    targets = [(kind, module) for kind, module in model.dlib_layers() if kind not in ("tag", "skip")]
    for index, ((kind, module), layer) in enumerate(zip(targets, net.layers, strict=True)):
        _load_layer(path, index, kind, module, layer)
    return model.eval()


# One lock for every cache write in this process (re-entrant: the ONNX export loads the weights).
_load_lock = threading.RLock()


def load_dlib_resnet(weights: WeightFile = WEIGHTS) -> DlibResNet:
    """The trainable network with dlib's weights (affine layers unfolded), in eval mode.

    The first call verifies and parses the .dat file and caches its state_dict under
    ``cache_dir()/dlib-resnet-<sha256 prefix>.pt``; later calls read the cache.
    """
    cached = cache_dir() / f"dlib-resnet-{weights.sha256[:16]}.pt"
    model = DlibResNet()
    with _load_lock:
        if cached.is_file():
            try:
                model.load_state_dict(torch.load(cached, weights_only=True, map_location="cpu"))
                return model.eval()
            except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):
                cached.unlink(missing_ok=True)  # a damaged cache entry is rebuilt from the source file
        model = parse_dlib_file(weights.verified_path())
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(cached)  # atomic, so a concurrent reader never sees half a file
    return model


def fold_affine(model: DlibResNet) -> DlibResNet:
    """An inference copy with every affine layer folded into the conv before it (same outputs)."""
    folded = copy.deepcopy(model).eval()
    pairs = [(folded, "conv", "aff")] + [
        (b, c, a) for b in folded.blocks for c, a in (("conv1", "aff1"), ("conv2", "aff2"))
    ]
    with torch.no_grad():
        for owner, conv_name, aff_name in pairs:
            conv, aff = getattr(owner, conv_name), getattr(owner, aff_name)
            conv.weight.mul_(aff.weight[:, None, None, None])
            conv.bias.mul_(aff.weight).add_(aff.bias)
            setattr(owner, aff_name, nn.Identity())
    return folded


def export_onnx(model: DlibResNet, path: Path) -> Path:
    """Export the (folded) network to ONNX with a free batch dimension; written atomically."""
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    names = {"input_names": ["chips"], "output_names": ["descriptors"]}
    axes = {"chips": {0: "n"}, "descriptors": {0: "n"}}
    return export_onnx_file(model, example, path, **names, dynamic_axes=axes)


def onnx_model(weights: WeightFile = WEIGHTS, *, rebuild: bool = False) -> Path:
    """The cached ONNX export of the folded network (made on first use, or again with ``rebuild``)."""
    path = cache_dir() / f"dlib-resnet-{weights.sha256[:16]}-opset17.onnx"
    with _load_lock:
        if rebuild or not path.is_file():
            export_onnx(fold_affine(load_dlib_resnet(weights)), path)
    return path


# Test-time jitter: the largest rotation (degrees), shift (pixels) and scale factor of a jittered view, the
# ranges of dlib's own jitter_image (rotation +-3 deg, shift +-2% of the face, zoom by at most 4%), with the
# scale made symmetric about 1 so that the views average to the unjittered chip.
JITTER_ROTATION = 3.0
JITTER_SHIFT = 3.0
JITTER_SCALE = 1.03
MAX_JITTER = 64


def jitter_params(count: int) -> np.ndarray:
    """(count, 4) rows (rotation degrees, scale, dx, dy) of the fixed jitter set.

    Antithetic pairs of Halton points (bases 2, 3, 5, 7, scaled to [-1, 1]): view 2k and 2k+1 are
    opposite perturbations, so every even-sized set is centred on the identity, and the first ``count``
    views of a larger set are the views of the smaller one (a longer run only adds views).
    """
    from scipy.stats import qmc

    # Point 0 of the unscrambled sequence is the corner (-1, -1, -1, -1); start at point 1.
    u = 2.0 * qmc.Halton(d=4, scramble=False).random((count + 1) // 2 + 1)[1:] - 1.0
    u = np.stack([u, -u], axis=1).reshape(-1, 4)[:count]
    return np.column_stack(
        [u[:, 0] * JITTER_ROTATION, JITTER_SCALE ** u[:, 1], u[:, 2] * JITTER_SHIFT, u[:, 3] * JITTER_SHIFT]
    )


def jitter_matrices(count: int, size: int = INPUT_SIZE) -> np.ndarray:
    """(count, 2, 3) affine maps of the jitter set: rotation and scale about the chip centre, then a shift."""
    centre = ((size - 1) / 2, (size - 1) / 2)
    out = np.empty((count, 2, 3))
    for m, (angle, scale, dx, dy) in zip(out, jitter_params(count), strict=True):
        m[:] = cv2.getRotationMatrix2D(centre, angle, scale)
        m[:, 2] += (dx, dy)
    return out


class DlibResNetEmbedder:
    """dlib's 128-D face descriptor on 150x150 chips aligned to :data:`TEMPLATE`.

    ``runtime``: "onnx" (ONNX Runtime on a graph exported from :class:`DlibResNet`), "torch" (PyTorch with
    the affine layers folded, channels-last) or "auto", the fastest measured by bench/bench_embed.py
    (ONNX Runtime when it is installed). ``threads``: intra-op threads, default the physical cores.
    Weights load on the first call to :meth:`embed`, once, under a lock.

    Test-time augmentation (:meth:`embed` only): ``flip`` (the default) adds the mirror image of every
    view, ``jitter`` that many fixed small similarity transforms of each chip (:func:`jitter_params`); the
    raw descriptors of a chip's views are averaged, then L2-normalised (as dlib's ``num_jitters`` does).
    A chip then costs ``(jitter + 1) * (2 if flip else 1)`` forward passes. Flip is on by default: on LFW
    it takes the 10-fold accuracy from 98.97% to 99.27% and open-set rank-1 from 92.3% to 93.9%, for
    1.7x the time per face (still 11x faster than dlib at batch 1: bench/bench_embed.py); jitter measured
    no further gain worth its cost (bench/bench_tta_lfw.py). The settings are part of ``version``, so
    galleries and caches never mix embeddings made with different views.
    """

    name = "dlib-resnet"
    input_size = INPUT_SIZE
    dim = 128
    # Distance on L2-normalised vectors at FAR 0.1% over all LFW same/different pairs through faceprint's
    # own pipeline (bench/calibrate_thresholds.py), by ``flip``: TAR 94.8% with flip, 93.4% without. The
    # same values as the gallery's built-in calibrations (gallery/thresholds.py), so `compare` and
    # `identify` agree. Jittered views keep their flip setting's value (their FAR 1e-3 distance on the LFW
    # pairs is within 0.008 of it: bench/bench_tta_lfw.py).
    THRESHOLDS: ClassVar[dict[bool, float]] = {True: 0.3771, False: 0.3848}
    batch_size = 64  # chips per forward pass: bounds memory, larger batches are no faster per face

    def __init__(
        self, runtime: Runtime = "auto", threads: int | None = None, flip: bool = True, jitter: int = 0
    ) -> None:
        if runtime not in ("auto", "onnx", "torch"):
            raise ModelError(f"unknown runtime {runtime!r} for {self.name}; use 'auto', 'onnx' or 'torch'")
        if not isinstance(flip, bool):
            raise ModelError(f"{self.name}: flip must be True or False, got {flip!r}")
        if isinstance(jitter, bool) or not isinstance(jitter, int) or not 0 <= jitter <= MAX_JITTER:
            raise ModelError(f"{self.name}: jitter must be an integer from 0 to {MAX_JITTER}, got {jitter!r}")
        if runtime == "auto":
            runtime = "onnx" if _has_onnxruntime() else "torch"
        self.runtime: Literal["onnx", "torch"] = runtime
        self.threads = threads or torch.get_num_threads()
        self.flip = flip
        self.jitter = jitter
        self.threshold = self.THRESHOLDS[flip]
        # bump the base when TEMPLATE, the weights or the preprocessing change (2: template refit)
        self.version = "2" + ("+flip" if flip else "") + (f"+jitter{jitter}" if jitter else "")
        self._jitter = jitter_matrices(jitter)
        self._run: Callable[[np.ndarray], np.ndarray] | None = None
        self._lock = threading.Lock()

    @property
    def views(self) -> int:
        """Forward passes per chip."""
        return (self.jitter + 1) * (2 if self.flip else 1)

    def template(self) -> np.ndarray:
        return TEMPLATE.copy()

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) RGB uint8 -> (N, 128) float32 L2-normalised, the mean of every view's raw
        descriptor; chips are taken a few at a time so that at most ``batch_size`` views exist at once
        (or one chip's views, when it has more)."""
        chips = self._check(chips)
        group = max(1, self.batch_size // self.views)
        out = [self._mean_view(chips[i : i + group]) for i in range(0, len(chips), group)]
        raw = np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
        return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)

    def embed_raw(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) RGB uint8 -> (N, 128) float32 descriptors as dlib computes them (norm ~1.4),
        one view per chip whatever ``flip`` and ``jitter`` say."""
        return self._forward(self._check(chips))

    def view_images(self, chips: np.ndarray) -> np.ndarray:
        """(V, N, 150, 150, 3): the chips, then each jittered copy, then (with ``flip``) all of them
        mirrored. A jittered copy fills the few border pixels it lacks (at most ~8 at a rotated corner) by
        reflection (BORDER_REFLECT_101), which continues the hair, skin or background texture there; edge
        replication would smear streaks and a constant fill would add an edge the chip does not have."""
        size = self.input_size
        out = np.empty((self.jitter + 1, *chips.shape), np.uint8)
        out[0] = chips
        for view, matrix in zip(out[1:], self._jitter, strict=True):
            for target, chip in zip(view, chips, strict=True):
                cv2.warpAffine(chip, matrix, (size, size), target, cv2.INTER_LINEAR, cv2.BORDER_REFLECT_101)
        return np.concatenate([out, out[:, :, :, ::-1]]) if self.flip else out

    def _mean_view(self, chips: np.ndarray) -> np.ndarray:
        views = self.view_images(chips)
        raw = self._forward(views.reshape(-1, *chips.shape[1:]))
        return raw.reshape(len(views), len(chips), self.dim).mean(axis=0)

    def _check(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        size = self.input_size
        if chips.ndim != 4 or chips.shape[1:] != (size, size, 3) or chips.dtype != np.uint8:
            raise ModelError(
                f"{self.name} takes (N, {size}, {size}, 3) uint8 RGB chips, got {chips.shape} {chips.dtype}"
            )
        return chips

    def _forward(self, chips: np.ndarray) -> np.ndarray:
        run = self._runner()
        out = [run(chips[i : i + self.batch_size]) for i in range(0, len(chips), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def release(self) -> None:
        """Drop the loaded network; the next call loads it again."""
        with self._lock:
            self._run = None

    def _runner(self) -> Callable[[np.ndarray], np.ndarray]:
        with self._lock:
            if self._run is None:
                self._run = self._load_onnx() if self.runtime == "onnx" else self._load_torch()
            return self._run

    def _load_torch(self) -> Callable[[np.ndarray], np.ndarray]:
        model = fold_affine(load_dlib_resnet()).to(memory_format=torch.channels_last)
        threads = self.threads

        def run(batch: np.ndarray) -> np.ndarray:
            x = (
                torch.from_numpy(batch)
                .permute(0, 3, 1, 2)
                .float()
                .contiguous(memory_format=torch.channels_last)
            )
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            with torch.inference_mode():
                return model(x).numpy()

        return run

    def _load_onnx(self) -> Callable[[np.ndarray], np.ndarray]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: on a shared CPU spinning doubled the time per face.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = onnx_model()
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime's own error types: a damaged cache entry is exported again
            path = onnx_model(rebuild=True)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run(batch: np.ndarray) -> np.ndarray:
            x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
            return session.run(None, {"chips": x})[0]

        return run


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None
