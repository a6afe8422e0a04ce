"""Recognizer: who is in this picture — a gallery name for every face, or "unknown".

``Recognizer`` composes a ``FaceAnalyzer`` (detect -> align -> embed) with a ``Gallery`` (exact search)
and the calibrated thresholds of the analyzer's embedder (``faceprint.thresholds``). Every 1:1
same/different decision goes through :func:`decide`: a gallery's ``verify`` and the gallery-free
``compare`` (:func:`verify`) alike.

Identification is open-set: the nearest person is named only within the threshold that keeps the
fraction of strangers named as someone (FPIR) at the gallery's target for its current size and templates
per person (:meth:`Recognizer.open_set_threshold`). People whom the user said a face is not
(:meth:`Recognizer.reject`) are skipped for that face and faces like it: faces within the 1:1 threshold
of the rejected face and nearer to it than to the person.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint.errors import GalleryError, ManyFacesError, NoFaceError
from faceprint.gallery import Candidate, Gallery
from faceprint.gallery.enrollment import (
    EnrollReport,
    EnrollResult,
    content_hash,
    enroll_dir,
    enroll_image,
)
from faceprint.io import ImageInput, describe
from faceprint.quality import face_size, quality_flags
from faceprint.thresholds import Calibration, checked_threshold, embedder_calibration
from faceprint.types import UNKNOWN, EmbedderKey, Face

if TYPE_CHECKING:
    from faceprint.analyzer import FaceAnalyzer

__all__ = [
    "Candidate",
    "ConfirmResult",
    "EmbedderChoice",
    "Match",
    "OpenSetThreshold",
    "Recognizer",
    "Verification",
    "decide",
    "embedder_for",
    "verify",
]


@dataclass(frozen=True)
class Match:
    """The identity decided for one face, with the open-set evidence behind it."""

    face: Face | None
    name: str  # person name, or "unknown"
    person_id: int | None
    distance: float  # to the nearest person; inf if the gallery is empty
    # Calibrated P(this face is the nearest person): 0.5 at the threshold, so >= 0.5 exactly when named.
    confidence: float
    candidates: tuple[Candidate, ...]  # top-k nearest people (rejected ones left out), nearest first
    margin: float = math.inf  # second-nearest person's distance minus the nearest's; inf: nobody second
    threshold: float = math.nan  # the identification threshold in force for this gallery
    gallery_size: int = 0  # people searched
    rejected: tuple[
        str, ...
    ] = ()  # nearer people skipped: the user said this face (or one like it) is not them

    @property
    def known(self) -> bool:
        return self.person_id is not None

    @property
    def nearest(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def answer_confidence(self) -> float:
        """P(the answer is right): ``confidence`` for a name, 1 - ``confidence`` for "unknown"."""
        return self.confidence if self.known else 1.0 - self.confidence


@dataclass(frozen=True)
class Verification:
    """1:1 comparison of the faces of two images."""

    distance: float
    same: bool
    confidence: float  # calibrated P(same person): 0.5 at the threshold, >= 0.5 exactly when ``same``
    threshold: float


@dataclass(frozen=True)
class OpenSetThreshold:
    """The identification threshold of a gallery and where it comes from."""

    threshold: float
    people: int  # people of this embedder enrolled
    source: str  # "caller", "gallery setting", "FPIR target" or "1:1 threshold" (no stranger model)
    target_fpir: float | None  # the target it was chosen for (FPIR target only)
    expected_fpir: float  # the stranger model's FPIR at this threshold (nan without a model)


@dataclass(frozen=True)
class ConfirmResult:
    """What a confirmation ("this is X") did."""

    name: str
    template_id: int | None  # the template added; None when the face failed the enrolment quality gate
    reason: str  # why no template was added ("" when one was)
    rejections_withdrawn: int  # earlier "not X" corrections of faces like this one, now withdrawn


def decide(distance: float, calibration: Calibration, threshold: float | None = None) -> Verification:
    """Same person or not at ``threshold`` (None: the calibration's), with the calibrated confidence
    centred on that threshold."""
    limit = calibration.threshold if threshold is None else checked_threshold(threshold)
    return Verification(distance, distance <= limit, float(calibration.confidence(distance, limit)), limit)


def verify(
    analyzer,
    image_a: ImageInput,
    image_b: ImageInput,
    *,
    calibration: Calibration | None = None,
    threshold: float | None = None,
) -> Verification:
    """Are the single faces of two images the same person? Without a ``calibration``, the built-in one
    of the analyzer's embedder (no gallery needed: what `faceprint compare` does)."""
    a, b = (analyzer.analyze_one(img) for img in (image_a, image_b))
    distance = float(np.linalg.norm(a.embedding - b.embedding))
    return decide(distance, calibration or embedder_calibration(analyzer.embedder), threshold)


@dataclass(frozen=True)
class EmbedderChoice:
    """The embedder to search a gallery with, and what the user should be told about that choice."""

    name: str
    note: str | None = None


def embedder_for(gallery: Gallery, requested: str | None = None) -> EmbedderChoice:
    """Which embedder works with ``gallery``: the one asked for; else the default, unless the gallery
    holds templates of other embedders only. Then it is the one covering most of its people, so that a
    gallery enrolled before the default changed keeps naming its people (embeddings of different
    embedders cannot be compared). The note says what the user should know: the switch, or people of
    the gallery that the chosen embedder cannot name."""
    from faceprint.models import DEFAULT_EMBEDDER

    # With combine="nearest" the counts are of templates, not people: still what "most" compares.
    covered: dict[str, int] = {}
    for key in gallery.embedders():
        searched = sum(gallery.template_counts(key).values())
        covered[key.name] = max(covered.get(key.name, 0), searched)
    name = requested or DEFAULT_EMBEDDER
    notes = []
    if requested is None and covered and DEFAULT_EMBEDDER not in covered:
        name = max(sorted(covered), key=covered.__getitem__)
        notes.append(
            f"{gallery.location} holds no templates of the default embedder {DEFAULT_EMBEDDER}: searching "
            f"it with {name} (`faceprint reembed` adds {DEFAULT_EMBEDDER} templates from the enrolled images)"
        )
    if gallery.combine == "mean" and covered:
        enrolled = sum(1 for p in gallery.people() if p.n_templates)
        missing = enrolled - covered.get(name, 0)
        if missing > 0:
            notes.append(
                f"{missing} of the {enrolled} people in {gallery.location} have no {name} templates and "
                f"cannot be named with it (`faceprint --embedder {name} reembed` adds them)"
            )
    return EmbedderChoice(name, "; ".join(notes) or None)


class Recognizer:
    """Enrol, identify and verify faces against a gallery, with the one ``analyzer`` doing every detection
    and embedding: when none is given, the default models, with the embedder :func:`embedder_for` picks
    for this gallery (a warning carries its note). ``threshold`` overrides the gallery's and the
    calibrated one."""

    def __init__(
        self, gallery: Gallery, analyzer: FaceAnalyzer | None = None, threshold: float | None = None
    ) -> None:
        if analyzer is None:
            import warnings

            from faceprint.analyzer import FaceAnalyzer

            choice = embedder_for(gallery)
            if choice.note:
                warnings.warn(choice.note, stacklevel=2)
            analyzer = FaceAnalyzer(embedder=choice.name)
        self.gallery = gallery
        self.analyzer = analyzer
        self.threshold_override = checked_threshold(threshold)

    @property
    def calibration(self) -> Calibration:
        embedder = self.analyzer.embedder
        return self.gallery.calibration(EmbedderKey.of(embedder), getattr(embedder, "threshold", None))

    @property
    def key(self) -> EmbedderKey:
        return EmbedderKey.of(self.analyzer.embedder)

    def threshold(self, override: float | None = None) -> float:
        """The 1:1 distance threshold in force: call > recognizer > gallery > calibration > embedder."""
        for value in (checked_threshold(override), self.threshold_override):
            if value is not None:
                return value
        return self.calibration.threshold

    def open_set_threshold(self, override: float | None = None) -> OpenSetThreshold:
        """The identification threshold for the gallery as it is now: the caller's, else the gallery's
        own setting, else the one that keeps the fraction of strangers named as someone at the
        gallery's FPIR target for its number of people and templates per person."""
        key = self.key
        calibration = self.calibration
        counts = self.gallery.template_counts(key)
        people = sum(counts.values())
        model = calibration.strangers

        def expected(limit: float) -> float:
            return model.fpir(limit, counts) if model is not None else math.nan

        for value, source in ((checked_threshold(override), "caller"), (self.threshold_override, "caller")):
            if value is not None:
                return OpenSetThreshold(value, people, source, None, expected(value))
        fixed = self.gallery.fixed_threshold(key)
        if fixed is not None:
            return OpenSetThreshold(fixed, people, "gallery setting", None, expected(fixed))
        if model is None:
            return OpenSetThreshold(calibration.threshold, people, "1:1 threshold", None, math.nan)
        target = self.gallery.fpir_target(key)
        limit = model.threshold(counts, target)
        return OpenSetThreshold(limit, people, "FPIR target", target, expected(limit))

    # -- enrolment (the policy: faceprint.gallery.enrollment) ------------------------------------

    def enroll(
        self,
        name: str,
        image: ImageInput,
        *,
        face_index: int | None = None,
        metadata: dict[str, Any] | None = None,
        reject_low_quality: bool = False,
    ) -> EnrollResult:
        """Enrol the subject of ``image`` (or face ``face_index``) as ``name``, created on first use.
        Problems with the image give a "refused" result with the reason, not an exception."""
        return enroll_image(
            self.gallery,
            name,
            image,
            self.analyzer,
            face_index=face_index,
            metadata=metadata,
            reject_low_quality=reject_low_quality,
        )

    def enroll_dir(
        self,
        root: Path | str,
        *,
        reject_low_quality: bool = False,
        largest: bool = False,
        progress: Callable[[EnrollResult, int, int], None] | None = None,
    ) -> EnrollReport:
        """Enrol every image of a ROOT/NAME/*.jpg folder as NAME, skipping images already enrolled (an
        interrupted run resumes cheaply). ``largest``: a photo with several faces of similar size gives
        its largest face instead of a refusal. ``progress(result, done, total)`` is called after each
        image."""
        return enroll_dir(
            self.gallery,
            root,
            self.analyzer,
            reject_low_quality=reject_low_quality,
            largest=largest,
            progress=progress,
        )

    # -- identification -----------------------------------------------------------------------

    def identify(self, image: ImageInput, top_k: int = 1, *, threshold: float | None = None) -> list[Match]:
        """A match for every face in the image, in the detector's order."""
        return self.match_faces(self.analyzer.analyze(image), top_k, threshold=threshold)

    def match_faces(
        self, faces: list[Face], top_k: int = 1, *, threshold: float | None = None
    ) -> list[Match]:
        """Decide each face (with an embedding) against the gallery: the nearest person not rejected for
        it if within the open-set threshold, else "unknown"; ``candidates`` lists the ``top_k`` nearest
        either way."""
        if not faces:
            return []
        if any(f.embedding is None for f in faces):
            raise ValueError("match_faces needs faces with embeddings (FaceAnalyzer.analyze gives them)")
        key = self.key
        decision = self.open_set_threshold(threshold)
        calibration = self.calibration
        queries = np.stack([f.embedding for f in faces]).astype(np.float32)
        rejected_near = self._rejections_near(queries, key, calibration.threshold)
        extra = max((len(r) for r in rejected_near), default=0)
        found = self.gallery.search(queries, key, top_k + 1 + extra)
        model = calibration.strangers
        matches = []
        for face, candidates, near in zip(faces, found, rejected_near, strict=True):
            # A person is skipped when the face is nearer a face rejected as them than to them: a
            # rejected face acts as a negative template, so their own photos still find them.
            skip = {c.person_id for c in candidates if near.get(c.person_id, math.inf) < c.distance}
            kept = tuple(c for c in candidates if c.person_id not in skip)
            rejected = tuple(c.name for c in candidates if c.person_id in skip)
            evidence = {
                "threshold": decision.threshold,
                "gallery_size": decision.people,
                "rejected": rejected,
            }
            if not kept:
                matches.append(Match(face, UNKNOWN, None, math.inf, 0.0, (), **evidence))
                continue
            best = kept[0]
            margin = kept[1].distance - best.distance if len(kept) > 1 else math.inf
            if model is not None:
                confidence = model.confidence(best.distance, decision.threshold)
            else:
                confidence = float(calibration.confidence(best.distance, decision.threshold))
            named = best.distance <= decision.threshold
            matches.append(
                Match(
                    face,
                    best.name if named else UNKNOWN,
                    best.person_id if named else None,
                    best.distance,
                    confidence,
                    kept[:top_k],
                    margin=margin,
                    **evidence,
                )
            )
        return matches

    def _rejections_near(
        self, queries: np.ndarray, key: EmbedderKey, radius: float
    ) -> list[dict[int, float]]:
        """For each query, {person id: distance to the nearest face rejected as that person}, over the
        rejected faces within ``radius`` (the 1:1 threshold: a face that close is taken for the same face)."""
        vectors, owners = self.gallery.rejections(key)
        if not len(owners):
            return [{} for _ in queries]
        if vectors.shape[1] != queries.shape[1]:
            raise GalleryError(
                f"{self.gallery.location}: corrections of {key} have {vectors.shape[1]} dimensions, "
                f"the query {queries.shape[1]}"
            )
        dist = np.sqrt(np.clip(2.0 - 2.0 * queries @ vectors.T, 0.0, None))
        found = []
        for row in dist:
            near: dict[int, float] = {}
            for j in np.flatnonzero(row <= radius):
                pid = int(owners[j])
                near[pid] = min(near.get(pid, math.inf), float(row[j]))
            found.append(near)
        return found

    # -- corrections ------------------------------------------------------------------------

    def reject(self, image: ImageInput, name: str, *, face_index: int | None = None) -> int:
        """ "This face is not ``name``": from now on that face, and faces within the 1:1 threshold of it,
        are never named ``name`` (their templates stay). The face is the one of ``image`` now named
        ``name`` (or ``face_index``, or the only face). Returns the correction's id."""
        faces = self.analyzer.analyze(image)
        face = self._pick(faces, name, face_index, describe(image))
        return self.reject_face(face, name, content_hash=content_hash(image))

    def reject_face(self, face: Face, name: str, *, content_hash: str | None = None) -> int:
        if face.embedding is None:
            raise ValueError("reject_face needs a face with an embedding")
        return self.gallery.add_correction(
            name, "reject", face.embedding, self.key, content_hash=content_hash
        )

    def confirm(self, image: ImageInput, name: str, *, face_index: int | None = None) -> ConfirmResult:
        """ "This face is ``name``": withdraws earlier rejections of ``name`` for faces like it, files the
        confirmation, and adds the face as a template of ``name`` only when it passes the enrolment
        quality gate (not small, not blurred). ``name`` must be enrolled already."""
        faces = self.analyzer.analyze(image, with_chips=True)
        face = self._pick(faces, name, face_index, describe(image))
        source = str(Path(image).resolve()) if isinstance(image, str | PathLike) else None
        return self.confirm_face(face, name, content_hash=content_hash(image), source_path=source)

    def confirm_face(
        self, face: Face, name: str, *, content_hash: str | None = None, source_path: str | None = None
    ) -> ConfirmResult:
        if face.embedding is None:
            raise ValueError("confirm_face needs a face with an embedding")
        person = self.gallery.person(name)
        key = self.key
        radius = self.calibration.threshold
        withdrawn = 0
        with self.gallery.store.transaction():
            for c in self.gallery.corrections(key, person.id, "reject"):
                if float(np.linalg.norm(c.embedding - face.embedding)) <= radius:
                    withdrawn += self.gallery.delete_correction(c.id)
            self.gallery.add_correction(person.id, "confirm", face.embedding, key, content_hash=content_hash)
            flags = quality_flags(face.box, self.analyzer.quality_chip(face))
            if flags:
                return ConfirmResult(person.name, None, f"low quality face: {', '.join(flags)}", withdrawn)
            template = self.gallery.add_template(
                person.id,
                face.embedding,
                embedder=key.name,
                embedder_version=key.version,
                source_path=source_path,
                content_hash=content_hash,
                score=face.score,
                face_size=face_size(face.box),
            )
        reason = "" if template is not None else "this image is already one of their templates"
        return ConfirmResult(person.name, template, reason, withdrawn)

    def _pick(self, faces: list[Face], name: str, face_index: int | None, source: str) -> Face:
        """The face a correction about ``name`` is meant for: ``face_index``, else the only face, else
        the one face nearest to ``name`` (several faces with none clearly nearer: refused)."""
        if not faces:
            raise NoFaceError(f"{source}: no face found")
        if face_index is not None:
            if not 0 <= face_index < len(faces):
                raise ManyFacesError(f"{source}: face {face_index} asked for, {len(faces)} found")
            return faces[face_index]
        if len(faces) == 1:
            return faces[0]
        person = self.gallery.person(name)
        # Exactly, from the person's own templates: a search for everybody would not scale.
        distance = self.gallery.distances_to(person.id, np.stack([f.embedding for f in faces]), self.key)
        order = np.argsort(distance)
        if (
            distance[order[0]] > self.calibration.threshold
            or distance[order[1]] <= self.calibration.threshold
        ):
            raise ManyFacesError(
                f"{source}: {len(faces)} faces found and not exactly one looks like {person.name}; "
                "pick one with face_index (--face N)"
            )
        return faces[int(order[0])]

    def verify(
        self, image_a: ImageInput, image_b: ImageInput, *, threshold: float | None = None
    ) -> Verification:
        """Are the single faces of two images the same person? (This gallery's threshold in force.)"""
        return verify(
            self.analyzer, image_a, image_b, calibration=self.calibration, threshold=self.threshold(threshold)
        )
