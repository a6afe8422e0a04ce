"""Batch jobs over many images on a Ray cluster (``faceprint[ray]``): enrolment of a PEOPLE/NAME/*.jpg folder
into a gallery, and embedding of a folder of images to one ``.npz`` file.

Built on Ray Data: the image list is a dataset, ``map_batches`` runs a stateful worker class in a fixed
actor pool (``ActorPoolStrategy``), so each actor loads the detector and embedder once and keeps them for
every batch it is given. The analyzer travels to the actors as its recipe (model names and options; see
``FaceAnalyzer.__reduce__``), never as loaded weights.

Enrolment applies exactly the policy of the single-process ``enroll-dir`` (``enroll_folder_image`` for
every image: the folder's name, one main face, quality flags, dedup, one transaction per image), each
actor writing to the gallery itself, so the driver never holds millions of results' embeddings:
- resumable: an image already enrolled for that person and embedder (same content hash) is skipped
  before the detector runs;
- a failure of one image (unreadable, no face, several faces) is a "refused" row with the reason;
- a worker lost mid-run (killed, node gone) is restarted by Ray and its unfinished batch retried: the
  images it had already written are then skipped by content hash, and the store's unique
  (person, content hash, embedder) constraint makes a second write of the same image a no-op, so
  nothing is lost and nothing is duplicated.

For a cluster of several hosts the gallery must be one they all reach: a PostgreSQL URL. A SQLite file
works on one host (actors are processes of that host, writing one at a time).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint.errors import FaceprintError
from faceprint.gallery.enrollment import EnrollReport, EnrollResult

if TYPE_CHECKING:
    from faceprint.analyzer import FaceAnalyzer

# Images per batch handed to one actor: large enough to amortise Ray's per-task overhead (~ms), small
# enough that a lost worker redoes little and progress is reported often.
BATCH_SIZE = 8
LOCAL = "local"  # --ray local: start a Ray instance on this machine


class BatchError(FaceprintError):
    """A batch job could not start (no Ray cluster at the address, nothing to do)."""


def connect(address: str | None, *, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` ("auto": the one started on this host with ``ray start``;
    ``ray://host:10001``: a remote one), or start a local one (``None`` or "local") with ``num_cpus``."""
    import ray

    if ray.is_initialized():
        return
    try:
        if address in (None, LOCAL):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise BatchError(f"cannot join the Ray cluster at {address}: {err}") from err


class _EnrollWorker:
    """One actor: opens the gallery and builds the analyzer once, then enrols batch after batch."""

    def __init__(self, gallery: str, analyzer: FaceAnalyzer, options: dict[str, bool]) -> None:
        from faceprint.gallery import Gallery

        self.gallery = Gallery.open(gallery)
        self.analyzer = analyzer
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        from faceprint.gallery.enrollment import enroll_folder_image

        out: dict[str, list[Any]] = {field: [] for field in _RESULT_FIELDS}
        for name, path in zip(batch["name"], batch["path"], strict=True):
            result = enroll_folder_image(
                self.gallery, str(name), Path(str(path)), self.analyzer, **self.options
            )
            out["source"].append(result.source)
            out["name"].append(result.name)
            out["status"].append(result.status)
            out["reason"].append(result.reason)
            out["template_id"].append(-1 if result.template_id is None else result.template_id)
            out["flags"].append(",".join(result.flags))
            out["problem"].append(result.problem)
        return out


_RESULT_FIELDS = ("source", "name", "status", "reason", "template_id", "flags", "problem")


def _pool(workers: int) -> dict[str, Any]:
    """``map_batches`` arguments of a fixed pool of ``workers`` actors, one CPU each, restarted when
    lost (their unfinished batches retried)."""
    import ray.data

    return {
        "compute": ray.data.ActorPoolStrategy(size=workers),
        "num_cpus": 1,
        "max_restarts": -1,
        "max_task_retries": -1,
    }


def enroll_dir(
    gallery: str,
    root: Path | str,
    analyzer: FaceAnalyzer,
    *,
    address: str | None = None,
    workers: int = 2,
    reject_low_quality: bool = False,
    largest: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[EnrollResult, int, int], None] | None = None,
) -> EnrollReport:
    """Enrol a ``ROOT/NAME/*.jpg`` folder into the gallery at ``gallery`` (a path or URL every worker can
    open) on Ray: the same results as :func:`faceprint.gallery.enrollment.enroll_dir`, in another order."""
    import ray.data

    from faceprint.gallery.store import open_store
    from faceprint.io import labelled_images

    jobs = [{"name": name, "path": str(p)} for name, paths in labelled_images(root).items() for p in paths]
    # A gallery that cannot be opened fails here, once, rather than in every actor (restarted forever).
    open_store(gallery, create=True).close()
    connect(address, num_cpus=workers)
    dataset = ray.data.from_items(jobs).map_batches(
        _EnrollWorker,
        fn_constructor_kwargs={
            "gallery": gallery,
            "analyzer": analyzer,
            "options": {"reject_low_quality": reject_low_quality, "largest": largest},
        },
        batch_size=batch_size,
        **_pool(workers),
    )
    results = []
    for row in _rows(dataset):
        tid = int(row["template_id"])
        result = EnrollResult(
            str(row["source"]),
            str(row["name"]),
            row["status"],
            str(row["reason"]),
            None if tid < 0 else tid,
            tuple(f for f in str(row["flags"]).split(",") if f),
            problem=str(row["problem"]),
        )
        results.append(result)
        if progress is not None:
            progress(result, len(results), len(jobs))
    return EnrollReport(tuple(results))


@dataclass(frozen=True)
class Embeddings:
    """What ``embed_dir`` computed: one row per image with a face (its main face), and the failures."""

    paths: tuple[str, ...]
    embeddings: np.ndarray  # (N, D) float32, L2-normalised
    failures: tuple[tuple[str, str], ...]  # (path, reason)

    def save(self, path: Path | str) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            paths=np.array(self.paths, dtype=str),
            embeddings=self.embeddings,
            failed=np.array([p for p, _ in self.failures], dtype=str),
            reasons=np.array([r for _, r in self.failures], dtype=str),
        )
        os.replace(tmp, path)


class _EmbedWorker:
    def __init__(self, analyzer: FaceAnalyzer) -> None:
        self.analyzer = analyzer

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        from faceprint.subject import portrait_subject

        out: dict[str, list[Any]] = {"path": [], "embedding": [], "reason": []}
        for path in map(str, batch["path"]):
            try:
                faces = self.analyzer.analyze(path)
                reason = "" if faces else "no face found"
                vector = portrait_subject(faces, path).embedding if faces else None
            except FaceprintError as err:
                reason, vector = str(err), None
            out["path"].append(path)
            out["embedding"].append(np.zeros(0, np.float32) if vector is None else vector.astype(np.float32))
            out["reason"].append(reason)
        return out


def embed_dir(
    paths: list[Path],
    analyzer: FaceAnalyzer,
    *,
    address: str | None = None,
    workers: int = 2,
    batch_size: int = BATCH_SIZE,
) -> Embeddings:
    """The embedding of the main face of every image, computed on Ray (rows in the order of ``paths``)."""
    import ray.data

    if not paths:
        raise BatchError("no images to embed")
    connect(address, num_cpus=workers)
    dataset = ray.data.from_items([{"path": str(p)} for p in paths]).map_batches(
        _EmbedWorker, fn_constructor_kwargs={"analyzer": analyzer}, batch_size=batch_size, **_pool(workers)
    )
    rows = {
        str(r["path"]): (np.asarray(r["embedding"], np.float32), str(r["reason"])) for r in _rows(dataset)
    }
    done = [(str(p), *rows[str(p)]) for p in paths]
    good = [(p, v) for p, v, reason in done if not reason]
    dim = good[0][1].size if good else 0
    return Embeddings(
        tuple(p for p, _ in good),
        np.stack([v for _, v in good]) if good else np.zeros((0, dim), np.float32),
        tuple((p, reason) for p, _, reason in done if reason),
    )


def _rows(dataset: Any) -> Iterator[dict[str, Any]]:
    """The dataset's rows; a job that failed on the cluster (a worker's error that retries did not cure,
    a cluster gone) is one BatchError with the first line of the cause, not a Ray traceback."""
    import ray.exceptions

    try:
        yield from dataset.iter_rows()
    except ray.exceptions.RayError as err:
        cause = str(err).strip().splitlines()
        raise BatchError(f"the Ray job failed: {cause[-1] if cause else type(err).__name__}") from err
