"""The one place where the service calls the library: one analyzer, gallery and recognizer per process,
the unknown-face clusters, thumbnails and recent results. Everything here is synchronous and thread-safe;
the API runs it off the event loop (``anyio.to_thread``) under a limit of ``config.workers`` CPU jobs.

Nothing here re-implements a stage or a policy: detection, the subject of a portrait, enrolment rules,
thresholds and decisions all come from the library.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from faceprint import subject
from faceprint.errors import FaceprintError, GalleryError
from faceprint.service.config import ServiceConfig
from faceprint.service.errors import ApiError
from faceprint.service.state import ServiceState, state_path_for
from faceprint.video.clustering import UnknownClusters, UnknownsError, load_clusters

if TYPE_CHECKING:
    from faceprint.analyzer import FaceAnalyzer
    from faceprint.gallery import Gallery, Person
    from faceprint.recognizer import Match
    from faceprint.types import Face

THUMB_SIDE = 160  # pixels of a stored face thumbnail's longer side
RECENT_RESULTS = 2000  # recognition results kept for "this match is wrong" (oldest forgotten first)
RECENT_SECONDS = 3600.0
# Camera frames (the live page): faces under this many pixels are not looked for, as `faceprint watch`
# does; at 640x360 that skips the pyramid's costly fine levels (detection several times faster) and
# faces too small to recognise reliably.
VIDEO_MIN_FACE = 40


@dataclass(frozen=True)
class RecentFace:
    face: Face
    embedding: np.ndarray
    name: str
    person_id: int | None
    distance: float
    crop_jpeg: bytes | None  # JPEG, not pixels: 2000 results x faces stay a few MB, not hundreds


def person_name(name: str | None) -> str:
    """A person's name as the gallery will store it, checked by the library's one name policy; a name it
    refuses is a 422 with the library's reason."""
    from faceprint.names import person_name as checked

    try:
        return checked(name or "")
    except FaceprintError as err:
        raise ApiError(422, "invalid_name", str(err)) from None


class SharedClusters(UnknownClusters):
    """The unknown-face clusters that API requests and camera threads add to: one lock around them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.RLock()
        self.changed = False

    def add(self, *args: Any, **kwargs: Any) -> int:
        with self.lock:
            self.changed = True
            return super().add(*args, **kwargs)


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ApiError(500, "internal_error", "cannot encode a thumbnail")
    return data.tobytes()


def thumbnail(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    from faceprint.video.outputs import crop_face

    crop = crop_face(image, box)
    h, w = crop.shape[:2]
    scale = THUMB_SIDE / max(h, w, 1)
    if scale < 1:
        crop = cv2.resize(
            crop, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    return crop


class Engine:
    def __init__(self, config: ServiceConfig, analyzer: FaceAnalyzer | None = None) -> None:
        from faceprint.analyzer import FaceAnalyzer
        from faceprint.gallery import Gallery
        from faceprint.recognizer import Recognizer

        self.config = config
        self.gallery: Gallery = Gallery.open(config.gallery)
        self.embedder_note: str | None = None  # what `faceprint serve` tells the user about the embedder
        if analyzer is None:
            from faceprint.recognizer import embedder_for

            choice = embedder_for(self.gallery, config.embedder)
            self.embedder_note = choice.note
            analyzer = FaceAnalyzer(
                embedder=choice.name,
                detector_options=dict(config.detector_options),
                embedder_options=dict(config.embedder_options),
            )
        self.analyzer = analyzer
        self.recognizer = Recognizer(self.gallery, self.analyzer)
        self.state_path = Path(config.state) if config.state else state_path_for(config.gallery)
        self.state = ServiceState(self.state_path)
        self.unknowns_dir = self.state_path.with_name(
            self.state_path.name.replace(".sqlite3", "") + ".unknowns"
        )
        self._video_analyzer: FaceAnalyzer | None = None
        self._clusters: SharedClusters | None = None
        self._recent: OrderedDict[str, tuple[float, list[RecentFace]]] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._ready = threading.Event()
        self._sighting = 0
        self._count_lock = threading.Lock()
        self.faces_processed = 0

    # -- life ---------------------------------------------------------------------------------

    @property
    def locations(self) -> tuple[str, ...]:
        return (self.gallery.location, str(self.state_path), str(self.unknowns_dir))

    def warm_up(self) -> None:
        """Load the models now (first requests then do not wait for them)."""
        try:
            for analyzer in (self.analyzer, self.video_analyzer):
                analyzer.analyze(np.zeros((64, 64, 3), np.uint8))
            self.clusters  # noqa: B018 (loads the saved unknown clusters)
        finally:
            self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def close(self) -> None:
        self.save_unknowns()
        self.state.close()
        self.gallery.close()

    # -- images -------------------------------------------------------------------------------

    def decode(self, data: bytes, field: str = "image") -> np.ndarray:
        from faceprint.io import load_image

        try:
            return load_image(data, max_pixels=self.config.max_pixels)
        except FaceprintError as err:
            raise ApiError(400, "bad_image", f"{field}: {str(err).removeprefix('<bytes>: ')}") from err

    @property
    def video_analyzer(self) -> FaceAnalyzer:
        """The analyzer for camera frames: the same embedder, a detector that skips tiny faces."""
        if self._video_analyzer is None:
            from faceprint.analyzer import FaceAnalyzer

            with self._recent_lock:  # once, even when the first frames arrive together
                if self._video_analyzer is None:
                    options = {**self.config.detector_options, "min_face_size": VIDEO_MIN_FACE}
                    self._video_analyzer = FaceAnalyzer(
                        detector_options=options, embedder=self.analyzer.embedder
                    )
        return self._video_analyzer

    def analyze(self, image: np.ndarray, video: bool = False) -> list[Face]:
        faces = (self.video_analyzer if video else self.analyzer).analyze(image)
        self._count(len(faces))
        return faces

    def detect(self, image: np.ndarray) -> list:
        found = self.analyzer.detect(image)
        self._count(len(found))
        return found

    def _count(self, faces: int) -> None:
        with self._count_lock:
            self.faces_processed += faces

    # -- recognition --------------------------------------------------------------------------

    def identify(
        self, image: np.ndarray, top_k: int, remember_unknowns: bool = True, video: bool = False
    ) -> tuple[str, list[Match]]:
        """Every face's match; the result id lets a client say "this match is wrong" later. ``video``:
        a camera frame (see VIDEO_MIN_FACE), whose result keeps no face crop (a live page corrects a
        match with "wrong", which needs none; "this is NAME" on a photo adds the crop as a thumbnail)."""
        faces = self.analyze(image, video)
        matches = self.recognizer.match_faces(faces, top_k) if faces else []
        recent = []
        for match in matches:
            assert match.face is not None
            unknown = remember_unknowns and not match.known
            crop = thumbnail(image, match.face.box) if unknown or not video else None
            recent.append(
                RecentFace(
                    match.face,
                    match.face.embedding,
                    match.name,
                    match.person_id,
                    match.distance,
                    None if video or crop is None else encode_jpeg(crop),
                )
            )
            if unknown and crop is not None:
                self._remember_unknown(match.face, crop)
        result_id = uuid.uuid4().hex
        now = time.monotonic()
        with self._recent_lock:
            self._recent[result_id] = (now, recent)
            while self._recent and (
                len(self._recent) > RECENT_RESULTS
                or next(iter(self._recent.values()))[0] < now - RECENT_SECONDS
            ):
                self._recent.popitem(last=False)
        return result_id, matches

    def verify(self, a: np.ndarray, b: np.ndarray):
        return self.recognizer.verify(a, b)

    def recent_face(self, result_id: str, face: int) -> RecentFace:
        with self._recent_lock:
            found = self._recent.get(result_id)
        if found is None or not 0 <= face < len(found[1]):
            raise ApiError(
                404, "result_not_found", "no such recognition result (results are kept for an hour)"
            )
        return found[1][face]

    # -- people -------------------------------------------------------------------------------

    def person(self, person_id: int) -> Person:
        found = self.gallery.find(person_id)
        if found is None:
            raise ApiError(404, "person_not_found", f"no person with id {person_id}")
        return found

    def people(self) -> list[Person]:
        return self.gallery.people()

    def create_person(self, name: str) -> Person:
        name = person_name(name)
        if self.gallery.find(name) is not None:
            raise ApiError(409, "name_taken", "a person with this name already exists")
        return self.person(self.gallery.add_person(name))

    def rename(self, person_id: int, name: str) -> Person:
        name = person_name(name)
        self.person(person_id)
        other = self.gallery.find(name)
        if other is not None and other.id != person_id:
            raise ApiError(409, "name_taken", "a person with this name already exists")
        return self.gallery.rename(person_id, name)

    def merge(self, source: int, into: int) -> Person:
        self.person(source), self.person(into)
        merged = self.gallery.merge(source, into)
        self.state.move_thumbnails(source, into)
        kept = {t.id for t in self.gallery.templates(into)}
        self.state.keep_thumbnails(kept | self._all_template_ids(exclude=into))
        return merged

    def _all_template_ids(self, exclude: int | None = None) -> set[int]:
        return {t.id for t in self.gallery.templates() if t.person_id != exclude}

    def delete(self, person_id: int) -> dict[str, int]:
        self.person(person_id)
        try:
            templates = self.gallery.delete(person_id)
        finally:  # what the service keeps of the person goes even when the gallery cannot erase yet
            thumbs = self.state.delete_thumbnails(person_id=person_id)
            # The crops of recent results that named this person go too (nothing of them stays behind).
            with self._recent_lock:
                for key, (at, faces) in list(self._recent.items()):
                    if any(f.person_id == person_id for f in faces):
                        faces = [replace(f, crop_jpeg=None) if f.person_id == person_id else f for f in faces]
                        self._recent[key] = (at, faces)
        return {"templates": templates, "thumbnails": thumbs}

    def enrol(self, name: str, image: np.ndarray, source: str = "upload"):
        """Enrol the portrait's subject under ``name`` (created on first use), storing its thumbnail."""
        result = self.recognizer.enroll(person_name(name), image)
        if result.status == "enrolled" and result.template_id is not None and result.box is not None:
            person = self.gallery.find(result.name)
            if person is not None:
                self._put_thumbnail(result.template_id, person.id, encode_jpeg(thumbnail(image, result.box)))
        self._count(result.status == "enrolled")
        return result

    def _put_thumbnail(self, template_id: int, person_id: int, jpeg: bytes) -> None:
        self.state.put_thumbnail(template_id, person_id, jpeg)
        # A delete of the person (or the image) by another request in between must not leave the
        # picture behind: check after writing, so one of the two always removes it.
        try:
            alive = any(t.id == template_id for t in self.gallery.templates(person_id))
        except GalleryError:  # the person is gone
            alive = False
        if not alive:
            self.state.delete_thumbnails(template_id=template_id)

    def remove_image(self, person_id: int, template_id: int) -> None:
        self.person(person_id)
        if template_id not in {t.id for t in self.gallery.templates(person_id)}:
            raise ApiError(404, "image_not_found", f"person {person_id} has no image {template_id}")
        self.gallery.delete_template(template_id)
        self.state.delete_thumbnails(template_id=template_id)

    def images(self, person_id: int) -> list[dict[str, Any]]:
        thumbs = set(self.state.thumbnail_ids(person_id))
        return [
            {
                "id": t.id,
                "thumbnail": t.id in thumbs,
                "created": t.created,
                "quality_flags": list(t.quality_flags),
                "detection_score": t.detection_score,
            }
            for t in self.gallery.templates(person_id)
        ]

    def thumbnail_jpeg(self, template_id: int) -> bytes:
        found = self.state.thumbnail(template_id)
        if found is None:
            raise ApiError(404, "thumbnail_not_found", "no such thumbnail")
        return found[1]

    # -- corrections --------------------------------------------------------------------------

    def correct(self, result_id: str, face: int, right_name: str | None) -> dict[str, Any]:
        """A correction on a face of a recognition result, through the library's Recognizer: "this
        match is wrong" (``right_name`` None: the face, and faces like it, are no longer given that
        name) or "this is NAME" (the person is created if new; the face is confirmed as theirs, and the
        name it was wrongly given, if any, is rejected)."""
        found = self.recent_face(result_id, face)
        if right_name is None:
            if found.person_id is None:
                raise ApiError(409, "not_named", "this face was not named, so there is no match to reject")
            correction = self.recognizer.reject_face(found.face, found.name)
            return {"rejected": found.name, "correction_id": correction, "template_id": None}
        name = person_name(right_name)
        rejected = None
        with self.gallery.store.transaction():
            if self.gallery.find(name) is None:
                self.gallery.add_person(name)
            if found.person_id is not None and found.name != name:
                rejected = found.name
                self.recognizer.reject_face(found.face, found.name)
            confirmed = self.recognizer.confirm_face(found.face, name)
        person = self.gallery.person(confirmed.name)
        if confirmed.template_id is not None and found.crop_jpeg is not None:
            self._put_thumbnail(confirmed.template_id, person.id, found.crop_jpeg)
        return {
            "confirmed": confirmed.name,
            "person_id": person.id,
            "template_id": confirmed.template_id,
            "reason": confirmed.reason,
            "rejected": rejected,
            "rejections_withdrawn": confirmed.rejections_withdrawn,
        }

    def corrections(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest corrections of this embedder, newest first."""
        from faceprint.types import EmbedderKey

        names = {p.id: p.name for p in self.gallery.people()}
        key = EmbedderKey.of(self.analyzer.embedder)
        found = sorted(self.gallery.corrections(key), key=lambda c: -c.created)
        return [
            {
                "id": c.id,
                "kind": c.kind,
                "person_id": c.person_id,
                "name": names.get(c.person_id),
                "created": c.created,
            }
            for c in found[:limit]
        ]

    # -- unknown faces ------------------------------------------------------------------------

    @property
    def clusters(self) -> SharedClusters:
        if self._clusters is None:
            with self._recent_lock:
                if self._clusters is None:
                    self._clusters = self._load_clusters()
        return self._clusters

    def _load_clusters(self) -> SharedClusters:
        embedder = self.analyzer.embedder
        clusters = SharedClusters(self.recognizer.threshold(), (embedder.name, embedder.version))
        if self.unknowns_dir.exists():
            # Damaged: start afresh (the folder is rewritten on the next save).
            with contextlib.suppress(UnknownsError):
                clusters.restore(load_clusters(self.unknowns_dir))
        return clusters

    def _remember_unknown(self, face: Face, crop: np.ndarray) -> None:
        now = time.time()
        with self.clusters.lock:
            self._sighting += 1
            size = subject.area(face)
            self.clusters.add(self._sighting, face.embedding[None], [face.score], now, now, crop, size)

    def save_unknowns(self) -> None:
        if self._clusters is None:
            return
        with self._clusters.lock:
            if self._clusters.changed:
                self._clusters.save(self.unknowns_dir)
                self._clusters.changed = False

    def unknown_list(self) -> list[dict[str, Any]]:
        with self.clusters.lock:
            return [
                {
                    "id": c.cluster_id,
                    "sightings": c.tracks,
                    "samples": len(c.embeddings),
                    "first_seen": c.first_seen,
                    "last_seen": c.last_seen,
                    "has_crop": c.crop is not None,
                }
                for c in sorted(self.clusters.clusters, key=lambda c: -c.last_seen)
            ]

    def _cluster(self, cluster_id: int):
        for c in self.clusters.clusters:
            if c.cluster_id == cluster_id:
                return c
        raise ApiError(404, "cluster_not_found", f"no unknown-face cluster {cluster_id}")

    def unknown_crop(self, cluster_id: int) -> bytes:
        with self.clusters.lock:
            crop = self._cluster(cluster_id).crop
        if crop is None:
            raise ApiError(404, "thumbnail_not_found", "this cluster has no face crop")
        return encode_jpeg(crop)

    def assign_unknown(self, cluster_id: int, name: str | None, person_id: int | None) -> dict[str, Any]:
        """Enrol a cluster's samples under a person (new or existing) and drop the cluster."""
        from faceprint.video.clustering import enroll_embeddings

        with self.clusters.lock:
            cluster = self._cluster(cluster_id)
            if person_id is None and not (name or "").strip():
                raise ApiError(422, "invalid_request", "give a name or a person_id")
            target = self.person(person_id).name if person_id is not None else person_name(name)
            embedder, version = self.clusters.embedder
            added_ids = enroll_embeddings(
                self.gallery,
                target,
                np.stack(cluster.embeddings),
                (embedder, version),
                f"unknowns#{cluster_id}",
            )
            person = self.gallery.find(target)
            assert person is not None
            if added_ids and cluster.crop is not None:
                self._put_thumbnail(added_ids[0], person.id, encode_jpeg(cluster.crop))
            self._drop(cluster_id)
        return {"person_id": person.id, "name": person.name, "templates_added": len(added_ids)}

    def dismiss_unknown(self, cluster_id: int) -> None:
        with self.clusters.lock:
            self._cluster(cluster_id)
            self._drop(cluster_id)

    def _drop(self, cluster_id: int) -> None:
        clusters = self.clusters
        clusters.clusters = [c for c in clusters.clusters if c.cluster_id != cluster_id]
        clusters.changed = True
        self.save_unknowns()

    # -- gallery size -------------------------------------------------------------------------

    def sizes(self) -> tuple[int, int]:
        people = self.gallery.people()
        return len(people), sum(p.n_templates for p in people)
