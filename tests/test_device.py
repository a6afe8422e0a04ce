"""Where the networks run (models.device): CUDA when a CUDA device is usable, the CPU otherwise and when
FACEPRINT_DEVICE=cpu; every ONNX Runtime session is built on the chosen providers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceprint import models
from faceprint.errors import ModelError

CUDA = models._onnx_has_cuda() or models._torch_has_cuda()


def identity_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA device: the CPU fallback is not what runs")
def test_without_a_gpu_everything_runs_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACEPRINT_DEVICE", raising=False)
    assert models.device() == "cpu"
    assert models.onnx_providers() == ["CPUExecutionProvider"]
    assert models.torch_device() == "cpu"
    session = models.onnx_session(lambda rebuild=False: identity_model(tmp_path / "id.onnx"))
    assert session.get_providers() == ["CPUExecutionProvider"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x)
    # Insisting on the GPU without one is a one-line error, not a silent CPU run.
    monkeypatch.setenv("FACEPRINT_DEVICE", "cuda")
    with pytest.raises(ModelError, match="no CUDA device is usable"):
        models.device()


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (onnxruntime-gpu or a CUDA torch build)")
def test_with_a_gpu_sessions_use_cuda_unless_told_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FACEPRINT_DEVICE", raising=False)
    assert models.device() == "cuda"
    if models._onnx_has_cuda():
        session = models.onnx_session(lambda rebuild=False: identity_model(tmp_path / "id.onnx"))
        assert session.get_providers()[0] == "CUDAExecutionProvider"
    monkeypatch.setenv("FACEPRINT_DEVICE", "cpu")
    assert models.onnx_providers() == ["CPUExecutionProvider"] and models.torch_device() == "cpu"


def test_cuda_provider_comes_first_when_onnx_runtime_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The choice itself (what onnxruntime-gpu reports is stood in for: no GPU is lent to CI)."""
    monkeypatch.delenv("FACEPRINT_DEVICE", raising=False)
    monkeypatch.setattr(models, "_onnx_has_cuda", lambda: True)
    assert models.device() == "cuda"
    assert models.onnx_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setenv("FACEPRINT_DEVICE", "cpu")
    assert models.onnx_providers() == ["CPUExecutionProvider"]


def test_unknown_device_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPRINT_DEVICE", "tpu")
    with pytest.raises(ModelError, match="FACEPRINT_DEVICE='tpu': choose one of auto, cpu, cuda"):
        models.device()
