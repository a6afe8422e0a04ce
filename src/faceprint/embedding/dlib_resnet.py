"""dlib's 128-D face descriptor as an embedder: chips aligned to dlib's template, run through
:class:`~faceprint.embedding.dlib_net.DlibResNet` on ONNX Runtime or PyTorch, with test-time views
(:mod:`faceprint.embedding.views`) averaged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from faceprint.embedding import onnx_chip_runner
from faceprint.embedding.dlib_net import INPUT_SIZE, fold_affine, load_dlib_resnet, onnx_model
from faceprint.embedding.views import MAX_JITTER, jitter_matrices, view_images
from faceprint.errors import ModelError
from faceprint.models import Lazy
from faceprint.thresholds import builtin_calibration
from faceprint.types import EmbedderKey

# Landmarks (faceprint order: image-left eye, image-right eye, nose, image-left and image-right mouth
# corner) where dlib's own get_face_chip(size=150, padding=0.25) puts them, fitted over 1000 LFW faces by
# bench/fit_dlib_template.py: faceprint's MTCNN landmarks mapped through dlib's chip transform of the same
# face, averaged, so that our chips match the chips the network was trained on (how closely: that script's
# output and docs/embedding.md; tests/test_alignment.py pins it).
TEMPLATE = np.array(
    [[47.22, 45.37], [101.64, 45.29], [74.23, 77.41], [50.24, 105.09], [98.32, 105.05]], dtype=np.float32
)

Runtime = Literal["auto", "onnx", "torch"]


class DlibResNetEmbedder:
    """dlib's 128-D face descriptor on 150x150 chips aligned to :data:`TEMPLATE`.

    ``runtime``: "onnx" (ONNX Runtime on a graph exported from
    :class:`~faceprint.embedding.dlib_net.DlibResNet`), "torch" (PyTorch with the affine layers folded,
    channels-last) or "auto", the fastest measured by bench/bench_embed.py (ONNX Runtime when it is
    installed). ``threads``: intra-op threads, default the physical cores. Weights load on the first call
    to :meth:`embed`, once, under a lock.

    Test-time augmentation (:meth:`embed` only): ``flip`` (the default) adds the mirror image of every
    view, ``jitter`` that many fixed small similarity transforms of each chip
    (:func:`~faceprint.embedding.views.jitter_params`); the raw descriptors of a chip's views are
    averaged, then L2-normalised (as dlib's ``num_jitters`` does).
    A chip then costs ``(jitter + 1) * (2 if flip else 1)`` forward passes. Flip is on by default: it
    gains accuracy on LFW for less than twice the time per face; jitter gained too little for its cost
    (figures: docs/embedding.md). The settings are part of ``version``, so galleries and caches never mix
    embeddings made with different views.
    """

    name = "dlib-resnet"
    input_size = INPUT_SIZE
    dim = 128
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
        # bump the base when TEMPLATE, the weights or the preprocessing change (history: CHANGELOG.md)
        self.version = "2" + ("+flip" if flip else "") + (f"+jitter{jitter}" if jitter else "")
        self._jitter = jitter_matrices(jitter, INPUT_SIZE)
        self._run = Lazy(self._load_onnx if runtime == "onnx" else self._load_torch)

    @property
    def threshold(self) -> float:
        """Same/different distance threshold of this version: the built-in calibration's
        (``faceprint.thresholds``), so `compare`, `verify` and `identify` decide alike."""
        calibration = builtin_calibration(EmbedderKey.of(self))
        if calibration is None:  # a version bump without its calibration: a bug caught by the tests
            raise ModelError(f"{self.name} {self.version}: no built-in calibration")
        return calibration.threshold

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
        mirrored (:func:`faceprint.embedding.views.view_images`)."""
        return view_images(chips, self._jitter, self.flip)

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
        run = self._run.get()
        out = [run(chips[i : i + self.batch_size]) for i in range(0, len(chips), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def release(self) -> None:
        """Drop the loaded network; the next call loads it again."""
        self._run.reset()

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
        return onnx_chip_runner(onnx_model, self.threads)


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None
