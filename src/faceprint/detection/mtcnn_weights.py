"""MTCNN weights: locate the files the ``mtcnn`` PyPI package ships, verify, convert once, cache.

The package stores each net as a joblib pickle (lz4-compressed) of a plain list of float32 arrays in Keras
layout. We read it exactly once, with an unpickler that can build nothing but numpy arrays, convert the
arrays to PyTorch state dicts and cache those (``torch.save``) under the faceprint cache dir, keyed by the
source file's SHA-256; every later load is ``torch.load(weights_only=True)`` and never unpickles.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceprint.errors import ModelError
from faceprint.models import WeightFile, cache_dir, write_atomic

if TYPE_CHECKING:  # torch is imported only to convert or export, never for a cached graph
    import torch

NETS = ("pnet", "rnet", "onet")

WEIGHT_FILES: dict[str, WeightFile] = {
    net: WeightFile(package="mtcnn", relpath=f"assets/weights/{net}.lz4", sha256=sha, pip_name="mtcnn==1.0.0")
    for net, sha in (
        ("pnet", "ea6b0c3e685ebee3165326ad6484acc95f2ef78f1c94fbf40a55704fa989f7b5"),
        ("rnet", "cb00e6460f3c98b0bfafaba3c0a0ded4bdf6e62cee7174d969e8670d7e757fee"),
        ("onet", "94f6ea2f4cf985275ee958cdd762d17b6009348a4fb9d8c6be39ba73ffd22ca3"),
    )
}

# Keras layer sequence of each net: (state-dict prefix, kind). Dense layers that follow the last conv
# carry (channels, height, width) of the feature map they flatten.
_LAYOUT: dict[str, list[tuple[str, str]]] = {
    "pnet": [
        ("conv1", "conv"),
        ("prelu1", "prelu"),
        ("conv2", "conv"),
        ("prelu2", "prelu"),
        ("conv3", "conv"),
        ("prelu3", "prelu"),
        ("box", "conv"),
        ("cls", "conv"),
    ],
    "rnet": [
        ("conv1", "conv"),
        ("prelu1", "prelu"),
        ("conv2", "conv"),
        ("prelu2", "prelu"),
        ("conv3", "conv"),
        ("prelu3", "prelu"),
        ("dense", "flatten-dense"),
        ("prelu4", "prelu"),
        ("box", "dense"),
        ("cls", "dense"),
    ],
    "onet": [
        ("conv1", "conv"),
        ("prelu1", "prelu"),
        ("conv2", "conv"),
        ("prelu2", "prelu"),
        ("conv3", "conv"),
        ("prelu3", "prelu"),
        ("conv4", "conv"),
        ("prelu4", "prelu"),
        ("dense", "flatten-dense"),
        ("prelu5", "prelu"),
        ("box", "dense"),
        ("landmarks", "dense"),
        ("cls", "dense"),
    ],
}
# Feature map (channels, height, width) flattened before each net's first dense layer.
_FLATTENED = {"rnet": (64, 3, 3), "onet": (128, 3, 3)}


def _read_arrays(path: Path) -> list[np.ndarray]:
    """The list of arrays in a joblib+lz4 pickle, unpickled with only numpy arrays allowed."""
    import lz4.frame
    from joblib.numpy_pickle import NumpyUnpickler

    # joblib's format interleaves raw array bytes with pickle opcodes, so its own unpickler must do the
    # reading; we only narrow what it may construct to the three classes an array list needs.
    allowed = {
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    class ArraysOnly(NumpyUnpickler):
        def find_class(self, module: str, name: str) -> object:
            if (module, name) not in allowed:
                raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
            return super().find_class(module, name)

    try:
        data = lz4.frame.decompress(path.read_bytes())
        obj = ArraysOnly(str(path), io.BytesIO(data), ensure_native_byte_order=True).load()
    except Exception as err:  # lz4, pickle and joblib each raise their own types
        raise ModelError(f"{path}: cannot read MTCNN weights ({err})") from err
    if not isinstance(obj, list) or not all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in obj):
        raise ModelError(f"{path}: expected a list of float32 arrays, got {type(obj).__name__}")
    return obj


def convert(net: str, arrays: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Keras-layout arrays of one net -> PyTorch state dict for the modules in ``mtcnn_nets.py``."""
    import torch

    layout = _LAYOUT[net]
    n_expected = sum(1 if kind == "prelu" else 2 for _, kind in layout)
    if len(arrays) != n_expected:
        raise ModelError(f"MTCNN {net}: expected {n_expected} arrays, the file holds {len(arrays)}")
    state: dict[str, torch.Tensor] = {}
    it = iter(arrays)
    for name, kind in layout:
        if kind == "prelu":
            # Conv-stage alphas are (1, 1, C), dense ones (C,): PyTorch wants (C,).
            state[f"{name}.weight"] = torch.from_numpy(next(it).reshape(-1).copy())
            continue
        kernel, bias = next(it), next(it)
        if kind == "conv":  # (h, w, in, out) -> (out, in, h, w)
            weight = kernel.transpose(3, 2, 0, 1)
        elif kind == "dense":  # (in, out) -> (out, in)
            weight = kernel.T
        else:
            # Keras flattens the NHWC map with the width axis outermost, then height, then channel
            # (the Caffe-era weights were trained on transposed images). Reorder the input axis so a
            # plain NCHW flatten feeds the same features: no permute at run time.
            c, h, w = _FLATTENED[net]
            weight = kernel.reshape(w, h, c, -1).transpose(3, 2, 1, 0).reshape(kernel.shape[1], c * h * w)
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        state[f"{name}.bias"] = torch.from_numpy(bias.copy())
    return state


def load_state_dict(net: str, weight_file: WeightFile | None = None) -> dict[str, torch.Tensor]:
    """The converted state dict of one net: from the cache, else verified + converted + cached."""
    import torch

    weight_file = weight_file or WEIGHT_FILES[net]
    cached = cache_dir() / f"mtcnn-{net}-{weight_file.sha256[:16]}.pt"
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign cache file: rebuild it from the source below
            cached.unlink(missing_ok=True)
    state = convert(net, _read_arrays(weight_file.verified_path()))
    write_atomic(cached, lambda tmp: torch.save(state, tmp))
    return state
