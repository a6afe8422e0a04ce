"""Group the unknown tracks of a run by person, so the same stranger seen several times is one cluster
that can be enrolled under a name afterwards.

Clustering is online (each ended unknown track joins the nearest cluster within the threshold or starts one)
because a run may last hours: memory stays bounded by ``max_clusters`` x ``max_samples``, which an offline
algorithm over every track ever seen would not give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceprint.errors import FaceprintError
from faceprint.video.outputs import save_crop

if TYPE_CHECKING:
    from faceprint.gallery import Gallery

CLUSTERS_FILE = "clusters.json"
EMBEDDINGS_FILE = "embeddings.npz"


class UnknownsError(FaceprintError):
    """A folder of unknown-face clusters is missing, damaged, or has no such cluster."""


@dataclass(eq=False)
class UnknownCluster:
    """Mutable while a run adds to it; saved as a ``clusters.json`` entry plus its embeddings."""

    cluster_id: int
    first_seen: float
    last_seen: float
    embeddings: list[np.ndarray] = field(repr=False)  # best samples, at most max_samples
    qualities: list[float] = field(repr=False)
    track_ids: list[int]  # the first max_tracks tracks; ``tracks`` counts them all
    tracks: int = 1
    crop: np.ndarray | None = field(default=None, repr=False)
    crop_quality: float = -1.0
    _sum: np.ndarray | None = field(default=None, repr=False)

    @property
    def centroid(self) -> np.ndarray:
        assert self._sum is not None
        return self._sum / max(float(np.linalg.norm(self._sum)), 1e-12)


class UnknownClusters:
    """Online clusters of unknown tracks, bounded in memory."""

    def __init__(
        self,
        threshold: float,
        embedder: tuple[str, str],
        *,
        max_clusters: int = 500,
        max_samples: int = 16,
        max_tracks: int = 100,
    ) -> None:
        self.threshold = threshold
        self.embedder = embedder  # (name, version) of the embedder the vectors come from
        self.max_clusters = max_clusters
        self.max_samples = max_samples
        self.max_tracks = max_tracks
        self.clusters: list[UnknownCluster] = []
        self._next_id = 1

    def add(
        self,
        track_id: int,
        embeddings: np.ndarray,
        qualities: list[float],
        start: float,
        end: float,
        crop: np.ndarray | None = None,
        crop_quality: float = 0.0,
    ) -> int:
        """Put an ended unknown track (its sample embeddings, (n, D)) in a cluster; returns the cluster id."""
        mean = embeddings.mean(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        cluster = None
        if self.clusters:
            distances = np.linalg.norm(np.stack([c.centroid for c in self.clusters]) - mean, axis=1)
            nearest = int(np.argmin(distances))
            if distances[nearest] <= self.threshold:
                cluster = self.clusters[nearest]
        if cluster is None:
            cluster = UnknownCluster(
                self._next_id, start, end, [], [], [], tracks=0, _sum=np.zeros_like(mean)
            )
            self._next_id += 1
            self.clusters.append(cluster)
            self._evict()
        assert cluster._sum is not None
        cluster._sum += mean
        cluster.tracks += 1
        if len(cluster.track_ids) < self.max_tracks:
            cluster.track_ids.append(track_id)
        cluster.first_seen, cluster.last_seen = min(cluster.first_seen, start), max(cluster.last_seen, end)
        for vec, q in zip(embeddings, qualities, strict=True):
            cluster.embeddings.append(np.asarray(vec, np.float32))
            cluster.qualities.append(q)
        while len(cluster.embeddings) > self.max_samples:
            worst = int(np.argmin(cluster.qualities))
            del cluster.embeddings[worst], cluster.qualities[worst]
        if crop is not None and crop_quality > cluster.crop_quality:
            cluster.crop, cluster.crop_quality = crop, crop_quality
        return cluster.cluster_id

    def restore(self, saved: list[SavedCluster]) -> None:
        """Continue from clusters a run saved (``load_clusters``); those of another embedder are skipped."""
        for entry in saved:
            if entry.embedder != self.embedder or not len(entry.embeddings):
                continue
            crop = None
            if entry.crop is not None and entry.crop.is_file():
                import cv2

                bgr = cv2.imread(str(entry.crop))
                crop = None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            mean = entry.embeddings.mean(axis=0)
            vectors = list(entry.embeddings.astype(np.float32))
            cluster = UnknownCluster(
                entry.cluster_id,
                entry.first_seen,
                entry.last_seen,
                vectors,
                [0.0] * len(vectors),
                [],
                tracks=entry.tracks,
                crop=crop,
                crop_quality=0.0 if crop is not None else -1.0,
                _sum=mean / max(float(np.linalg.norm(mean)), 1e-12) * entry.tracks,
            )
            self.clusters.append(cluster)
            self._next_id = max(self._next_id, entry.cluster_id + 1)
        self._evict()

    def _evict(self) -> None:
        # Over the limit: forget the stranger seen least (then longest ago); regulars stay.
        while len(self.clusters) > self.max_clusters:
            self.clusters.remove(min(self.clusters, key=lambda c: (c.tracks, c.last_seen)))

    def save(self, folder: Path) -> Path:
        """Write ``clusters.json``, ``embeddings.npz`` and one crop per cluster into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        entries, arrays = [], {}
        for c in self.clusters:
            crop_name = None
            if c.crop is not None and c.crop.size:
                crop_name = save_crop(folder, f"cluster_{c.cluster_id}.jpg", c.crop).name
            arrays[f"cluster_{c.cluster_id}"] = np.stack(c.embeddings).astype(np.float32)
            entries.append(
                {
                    "cluster": c.cluster_id,
                    "tracks": c.tracks,
                    "track_ids": c.track_ids,
                    "first_seen": round(c.first_seen, 3),
                    "last_seen": round(c.last_seen, 3),
                    "samples": len(c.embeddings),
                    "crop": crop_name,
                }
            )
        crops = {e["crop"] for e in entries}
        for stale in folder.glob("cluster_*.jpg"):  # dismissed or enrolled clusters leave no face behind
            if stale.name not in crops:
                stale.unlink(missing_ok=True)
        np.savez(folder / EMBEDDINGS_FILE, **arrays)
        path = folder / CLUSTERS_FILE
        name, version = self.embedder
        document = {"embedder": name, "embedder_version": version, "clusters": entries}
        path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        return path


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class SavedCluster:
    cluster_id: int
    tracks: int
    first_seen: float
    last_seen: float
    crop: Path | None
    embedder: tuple[str, str]  # (name, version)
    embeddings: np.ndarray = field(repr=False)  # (n, D) float32


def load_clusters(folder: Path) -> list[SavedCluster]:
    """The clusters a run saved into ``folder`` (see ``faceprint watch --unknowns``)."""
    folder = Path(folder)
    index, vectors = folder / CLUSTERS_FILE, folder / EMBEDDINGS_FILE
    if not index.is_file() or not vectors.is_file():
        raise UnknownsError(
            f"{folder}: no unknown-face clusters here ({CLUSTERS_FILE} and {EMBEDDINGS_FILE})"
        )
    try:
        document = json.loads(index.read_text(encoding="utf-8"))
        entries, embedder = document["clusters"], (document["embedder"], document["embedder_version"])
        with np.load(vectors, allow_pickle=False) as arrays:
            return [
                SavedCluster(
                    int(e["cluster"]),
                    int(e["tracks"]),
                    float(e["first_seen"]),
                    float(e["last_seen"]),
                    folder / e["crop"] if e["crop"] else None,
                    embedder,
                    arrays[f"cluster_{e['cluster']}"],
                )
                for e in entries
            ]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UnknownsError(f"{folder}: damaged unknown-face clusters ({err})") from err


def find_cluster(folder: Path, cluster_id: int) -> SavedCluster:
    clusters = load_clusters(folder)
    for cluster in clusters:
        if cluster.cluster_id == cluster_id:
            return cluster
    known = ", ".join(str(c.cluster_id) for c in clusters) or "none"
    raise UnknownsError(f"{folder}: no cluster {cluster_id} (clusters: {known})")


def enroll_cluster(folder: Path, cluster_id: int, name: str, gallery: Gallery) -> int:
    """Enrol every saved embedding of a cluster as ``name`` (created if new); returns templates added."""
    cluster = find_cluster(folder, cluster_id)
    source = f"{Path(folder) / CLUSTERS_FILE}#cluster_{cluster_id}"
    return len(enroll_embeddings(gallery, name, cluster.embeddings, cluster.embedder, source))


def enroll_embeddings(
    gallery: Gallery, name: str, embeddings: np.ndarray, embedder: tuple[str, str], source: str
) -> list[int]:
    """Enrol a cluster's embeddings as ``name`` (created if new), in one transaction; returns the new
    template ids."""
    name = " ".join(str(name).split())
    added = []
    with gallery.store.transaction():
        if gallery.find(name) is None:
            gallery.add_person(name)
        for vec in embeddings:
            template = gallery.add_template(
                name, vec, embedder=embedder[0], embedder_version=embedder[1], source_path=source
            )
            if template is not None:
                added.append(template)
    return added
