"""Bounds-checked reader of dlib's binary serialization, enough to read DNN weight files.

Written from dlib's public description of its format (serialize.h, dnn/core.h, dnn/layers.h,
dnn/input.h, dnn/loss.h, cuda/tensor.h); hand-written because no Python library reads it.

Encodings:

- integer: a control byte (low 4 bits = count of magnitude bytes, bit 0x80 = negative) followed by the
  magnitude, little-endian; unsigned integers must not set the sign bit;
- float/double: two integers, a 64-bit mantissa and a 16-bit exponent, value = mantissa * 2**exponent
  (exponents 32000/32001/32002 stand for +inf/-inf/NaN);
- bool: one ASCII byte ``'0'`` or ``'1'``; string: its length (integer) then its bytes;
- tensor: version 2, four dimensions (n, k, nr, nc), then raw little-endian float32 in NCHW order;
  alias tensor: version 1 and the four dimensions, no data.

A network file holds ``add_loss_layer`` (version 1) with the loss record, then one version integer per
wrapper from the outermost to the innermost (each ``add_layer`` reads its version before recursing into
its subnetwork), then the input record, then for each ``add_layer`` from the innermost outwards its
layer record followed by bookkeeping (three bools and empty tensors). Tags and skips store only their
version, so the wiring is not in the file: the caller passes the layout from the network's type.

Every read checks the bytes left first; any problem raises :class:`ModelError` naming the file, the
byte offset and what was wrong, and :func:`read_network` insists that the whole file was consumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from faceprint.errors import ModelError

_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
# No tensor in a face model comes near this; it stops a damaged dimension from asking for terabytes.
_MAX_ELEMENTS = 1 << 28


class DlibReader:
    """A cursor over the bytes of one dlib-serialized file; every read is bounds-checked."""

    def __init__(self, data: bytes, path: Path | str) -> None:
        self.data = memoryview(data)
        self.path = Path(path)
        self.pos = 0

    def error(self, problem: str, offset: int | None = None) -> ModelError:
        at = self.pos if offset is None else offset
        return ModelError(
            f"{self.path}: not a valid dlib model file: {problem} at byte offset {at} "
            f"(file size {len(self.data)}); the file is damaged or of another kind"
        )

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(f"file ends while reading {what} ({n} bytes needed, {self.remaining} left)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def integer(self, what: str, *, signed: bool = True, nbytes: int = 8) -> int:
        start = self.pos
        control = self.take(1, what)[0]
        if not signed and control & 0x80:
            raise self.error(f"negative value for unsigned {what}", start)
        size = control & 0x0F
        if control & 0x70 or size == 0 or size > nbytes:
            raise self.error(f"bad integer control byte 0x{control:02x} for {what}", start)
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & 0x80 else value

    def unsigned(self, what: str, nbytes: int = 8) -> int:
        return self.integer(what, signed=False, nbytes=nbytes)

    def real(self, what: str) -> float:
        start = self.pos
        mantissa = self.integer(f"mantissa of {what}", nbytes=8)
        exponent = self.integer(f"exponent of {what}", nbytes=2)
        if exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            raise self.error(f"{what} overflows (exponent {exponent})", start) from None

    def boolean(self, what: str) -> bool:
        start = self.pos
        byte = self.take(1, what)[0]
        if byte not in (ord("0"), ord("1")):
            raise self.error(f"expected '0' or '1' for {what}, found byte 0x{byte:02x}", start)
        return byte == ord("1")

    def string(self, what: str, max_len: int = 256) -> str:
        start = self.pos
        n = self.unsigned(f"length of {what}")
        if n > max_len:
            raise self.error(f"{what} claims a length of {n} bytes", start)
        raw = bytes(self.take(n, what))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.error(f"{what} is not ASCII text: {raw[:32]!r}", start) from None

    def version_string(self, what: str, allowed: Sequence[str]) -> str:
        start = self.pos
        found = self.string(f"version tag of {what}")
        if found not in allowed:
            raise self.error(
                f"expected {what} record {' or '.join(map(repr, allowed))}, found {found!r}", start
            )
        return found

    def version_int(self, what: str, allowed: Sequence[int]) -> int:
        start = self.pos
        found = self.integer(f"version of {what}", nbytes=4)
        if found not in allowed:
            raise self.error(
                f"expected {what} version {' or '.join(map(str, allowed))}, found {found}", start
            )
        return found

    def _dims(self, what: str) -> tuple[int, int, int, int]:
        start = self.pos
        dims = tuple(self.integer(f"dimension {i} of {what}") for i in range(4))
        if any(d < 0 for d in dims) or math.prod(dims) > _MAX_ELEMENTS:
            raise self.error(f"{what} has impossible dimensions {dims}", start)
        return dims  # type: ignore[return-value]

    def tensor(self, what: str) -> np.ndarray:
        self.version_int(f"tensor {what}", (2,))
        dims = self._dims(what)
        raw = self.take(4 * math.prod(dims), f"data of tensor {what}")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias_tensor(self, what: str) -> tuple[int, int, int, int]:
        self.version_int(f"alias tensor {what}", (1,))
        return self._dims(what)


# ---- layer records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv:
    weight: np.ndarray = field(repr=False)  # (out, in, kh, kw), as a PyTorch conv weight
    bias: np.ndarray | None = field(repr=False)  # (out,)
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Affine:
    gamma: np.ndarray = field(repr=False)  # (C,): y = x * gamma + beta, per channel
    beta: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class Pool:
    kind: Literal["max", "avg"]
    size: tuple[int, int]  # (0, 0) means the whole plane
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class AddPrev:
    pass


@dataclass(frozen=True)
class Linear:
    weight: np.ndarray = field(repr=False)  # (out, in), as a PyTorch Linear weight
    bias: np.ndarray | None = field(repr=False)


@dataclass(frozen=True)
class RGBInput:
    mean: tuple[float, float, float]  # R, G, B
    size: tuple[int, int] | None  # (rows, cols) for the sized variant


@dataclass(frozen=True)
class MetricLoss:
    margin: float
    distance_threshold: float


Layer = Conv | Affine | Relu | Pool | AddPrev | Linear
LayerKind = Literal["con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc"]
Wrapper = LayerKind | Literal["tag", "skip"]


def _split_params(r: DlibReader, params: np.ndarray, what: str, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Cut a layer's flat parameter tensor into the aliased pieces dlib describes."""
    sizes = [math.prod(s) for s in shapes]
    flat = params.reshape(-1)
    if flat.size != sum(sizes):
        raise r.error(f"{what} holds {flat.size} parameters, its layout needs {sum(sizes)}")
    out, start = [], 0
    for shape, n in zip(shapes, sizes, strict=True):
        out.append(flat[start : start + n].reshape(shape))
        start += n
    return out


def _multipliers(r: DlibReader, what: str) -> None:
    for name in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        r.real(f"{name} multiplier of {what}")


def _read_con(r: DlibReader) -> Conv:
    version = r.version_string("con", ("con_4", "con_5", "con_6"))
    params = r.tensor("con params")
    num_filters = r.integer("con num_filters")
    kh, kw = r.integer("con rows"), r.integer("con cols")
    stride = (r.integer("con stride_y", nbytes=4), r.integer("con stride_x", nbytes=4))
    padding = (r.integer("con padding_y", nbytes=4), r.integer("con padding_x", nbytes=4))
    filters = r.alias_tensor("con filters")
    biases = r.alias_tensor("con biases")
    _multipliers(r, "con")
    use_bias = r.boolean("con use_bias") if version in ("con_5", "con_6") else True
    if version == "con_6":
        r.boolean("con use_relu")
    if filters[0] != num_filters or filters[2:] != (kh, kw) or min(stride) < 1:
        raise r.error(f"con filters {filters} disagree with {num_filters} filters of {kh}x{kw}")
    if use_bias and math.prod(biases) != num_filters:
        raise r.error(f"con biases {biases} disagree with {num_filters} filters")
    shapes = [filters] + ([(num_filters,)] if use_bias else [])
    pieces = _split_params(r, params, "con params", *shapes)
    return Conv(pieces[0], pieces[1] if use_bias else None, stride, padding)


def _read_affine(r: DlibReader) -> Affine:
    version = r.version_string("affine", ("affine_", "affine_2"))
    params = r.tensor("affine params")
    gamma = r.alias_tensor("affine gamma")
    beta = r.alias_tensor("affine beta")
    r.integer("affine mode", nbytes=4)
    if version == "affine_2" and r.boolean("affine disabled"):
        raise r.error("disabled affine layers are not supported")
    g, b = _split_params(r, params, "affine params", gamma, beta)
    return Affine(g.reshape(-1), b.reshape(-1))


def _read_relu(r: DlibReader) -> Relu:
    if r.version_string("relu", ("relu_", "relu_2")) == "relu_2" and r.boolean("relu disabled"):
        raise r.error("disabled relu layers are not supported")
    return Relu()


def _read_pool(kind: Literal["max", "avg"]) -> Callable[[DlibReader], Pool]:
    def read(r: DlibReader) -> Pool:
        r.version_string(f"{kind}_pool", (f"{kind}_pool_2",))
        size = (r.integer(f"{kind}_pool rows"), r.integer(f"{kind}_pool cols"))
        stride = (r.integer(f"{kind}_pool stride_y", nbytes=4), r.integer(f"{kind}_pool stride_x", nbytes=4))
        padding = (
            r.integer(f"{kind}_pool padding_y", nbytes=4),
            r.integer(f"{kind}_pool padding_x", nbytes=4),
        )
        return Pool(kind, size, stride, padding)

    return read


def _read_add_prev(r: DlibReader) -> AddPrev:
    r.version_string("add_prev", ("add_prev_",))
    return AddPrev()


def _read_fc(r: DlibReader) -> Linear:
    version = r.version_string("fc", ("fc_2", "fc_3"))
    n_out, n_in = r.unsigned("fc num_outputs"), r.unsigned("fc num_inputs")
    params = r.tensor("fc params")
    weights = r.alias_tensor("fc weights")
    biases = r.alias_tensor("fc biases")
    bias_mode = r.integer("fc bias mode", nbytes=4)  # 0: with bias, 1: without
    _multipliers(r, "fc")
    use_bias = r.boolean("fc use_bias") if version == "fc_3" else True
    has_bias = bias_mode == 0 and use_bias
    if bias_mode not in (0, 1) or math.prod(weights) != n_in * n_out:
        raise r.error(f"fc layout {weights} (bias mode {bias_mode}) disagrees with {n_in} -> {n_out}")
    shapes = [(n_in, n_out)] + ([(math.prod(biases),)] if has_bias else [])
    pieces = _split_params(r, params, "fc params", *shapes)
    # dlib stores the matrix (inputs, outputs); PyTorch wants (outputs, inputs).
    return Linear(np.ascontiguousarray(pieces[0].T), pieces[1] if has_bias else None)


_LAYER_READERS = {
    "con": _read_con,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": _read_pool("max"),
    "avg_pool": _read_pool("avg"),
    "add_prev": _read_add_prev,
    "fc": _read_fc,
}


def _read_input(r: DlibReader) -> RGBInput:
    version = r.version_string("input", ("input_rgb_image", "input_rgb_image_sized"))
    mean = (r.real("input mean red"), r.real("input mean green"), r.real("input mean blue"))
    size = None
    if version == "input_rgb_image_sized":
        size = (r.unsigned("input rows"), r.unsigned("input cols"))
    return RGBInput(mean, size)


def _read_loss(r: DlibReader) -> MetricLoss:
    if r.version_string("loss", ("loss_metric_", "loss_metric_2")) == "loss_metric_":
        return MetricLoss(0.1, 0.75)  # the values dlib hard-coded for its first version
    return MetricLoss(r.real("loss margin"), r.real("loss distance threshold"))


def _bookkeeping(r: DlibReader, what: str, version: int, *, input_layer: bool) -> None:
    """The training state each add_layer stores after its layer record: flags and scratch tensors."""
    for flag in ("setup called", "gradient input is stale", "output and gradient disabled"):
        r.boolean(f"{flag} flag of {what}")
    r.tensor(f"x_grad of {what}")
    r.tensor(f"cached output of {what}")
    if input_layer:
        r.tensor(f"grad_final of {what}")
        if version >= 3:
            r.unsigned(f"sample expansion factor of {what}", nbytes=4)
    elif version >= 2:
        r.tensor(f"params_grad of {what}")


@dataclass(frozen=True)
class DlibNetwork:
    loss: MetricLoss
    input: RGBInput
    layers: list[Layer] = field(repr=False)  # innermost (next to the input) first


def read_network(path: Path | str, layout: Sequence[Wrapper]) -> DlibNetwork:
    """Read a ``loss<... input>`` network whose wrappers, outermost first, are ``layout``.

    Tags and skips appear in ``layout`` because they store a version; they produce no layer.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model file: {e.strerror or e}") from e
    r = DlibReader(data, path)
    r.version_int("add_loss_layer", (1,))
    loss = _read_loss(r)
    if not layout or layout[-1] in ("tag", "skip"):
        raise ValueError("the innermost wrapper of a layout must be a layer")
    versions: list[tuple[LayerKind, int]] = []  # one per layer, outermost first
    for i, wrapper in enumerate(layout):
        if wrapper == "tag" or wrapper == "skip":
            r.version_int(wrapper, (1,))
        else:
            is_input = i == len(layout) - 1
            versions.append(
                (wrapper, r.version_int(f"wrapper {i} ({wrapper})", (2, 3) if is_input else (1, 2)))
            )
    net_input = _read_input(r)
    layers: list[Layer] = []
    for depth, (kind, version) in enumerate(reversed(versions)):
        layers.append(_LAYER_READERS[kind](r))
        _bookkeeping(r, f"layer {depth} ({kind}, counted from the input)", version, input_layer=depth == 0)
    if r.remaining:
        raise r.error(f"{r.remaining} unexpected bytes after the last layer")
    return DlibNetwork(loss, net_input, layers)
