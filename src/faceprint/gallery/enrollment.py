"""Enrolment policy: which faces become templates, and the report of what was refused and why.

- An image must hold exactly one main face, unless the caller picks one (``face_index``, faces in the
  detector's order) or asks for the largest (``largest``, the subject policy's strategy). Faces under
  half the size of the largest one are background and ignored (noted in the result); two or more
  comparable faces are refused with the count (``problem`` "ambiguous", so that each front end can say
  how its user picks one).
- The name goes through the one name policy (``faceprint.names``); in a folder enrolment a folder whose
  name it refuses has each of its images refused with the reason, and the others go on.
- Tiny or blurred faces are flagged (``small``, ``blurry``) and stored with the flag, or refused when
  ``reject_low_quality`` is set.
- The same image (same bytes) is enrolled once per person and embedder: a second try is "skipped"
  without running the detector, which is what makes an interrupted folder enrolment cheap to resume.
  The same single-face image cannot be enrolled under two names.
- Each enrolment is one transaction, so an interrupted run leaves whole enrolments only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from faceprint import subject
from faceprint.errors import FaceprintError, GalleryError, ImageError, InvalidNameError, ManyFacesError
from faceprint.gallery.gallery import Gallery
from faceprint.io import ImageInput, describe, labelled_images, load_image
from faceprint.names import person_name, printable
from faceprint.quality import face_size, quality_flags
from faceprint.subject import portrait_subject
from faceprint.types import EmbedderKey

if TYPE_CHECKING:
    from faceprint.analyzer import FaceAnalyzer

Status = Literal["enrolled", "skipped", "refused"]


@dataclass(frozen=True)
class EnrollResult:
    source: str
    name: str
    status: Status
    reason: str = ""
    template_id: int | None = None
    flags: tuple[str, ...] = ()
    box: tuple[float, float, float, float] | None = None  # the enrolled face, in the image's pixels
    # Why it was refused, for front ends to act on: "ambiguous" (several faces of similar size), "name",
    # "no_face", "image" (unreadable), "duplicate" (someone else's image), "quality"; "" otherwise.
    problem: str = ""


@dataclass(frozen=True)
class EnrollReport:
    results: tuple[EnrollResult, ...]

    def with_status(self, status: Status) -> list[EnrollResult]:
        return [r for r in self.results if r.status == status]

    @property
    def enrolled(self) -> list[EnrollResult]:
        return self.with_status("enrolled")

    @property
    def skipped(self) -> list[EnrollResult]:
        return self.with_status("skipped")

    @property
    def refused(self) -> list[EnrollResult]:
        return self.with_status("refused")


def content_hash(source: ImageInput) -> str:
    """SHA-256 of a file's bytes (or of an array's shape and pixels): the identity of an enrolled image."""
    h = hashlib.sha256()
    if isinstance(source, str | PathLike):
        try:
            h.update(Path(source).read_bytes())
        except OSError as err:
            raise ImageError(f"{source}: cannot be read ({err.strerror or err})") from err
    elif isinstance(source, bytes | bytearray):
        h.update(source)
    else:
        pixels = load_image(source)
        h.update(str(pixels.shape).encode())
        h.update(pixels.tobytes())
    return h.hexdigest()


def embedder_mismatch(gallery: Gallery, key: EmbedderKey) -> str | None:
    """Why enrolling with embedder ``key`` would split the gallery, or None: it holds templates, none of
    them of ``key``, so identification with either would silently ignore the others."""
    held = gallery.embedders()
    if not held or key in held:
        return None
    return (
        f"the gallery's templates were made with {', '.join(map(str, held))}, this enrolment with {key}; "
        "identification compares one embedder's templates only, so they would never meet: enrol with the "
        "gallery's embedder and options, or add templates of this one to everyone first (reembed)"
    )


def enroll_image(
    gallery: Gallery,
    name: str,
    image: ImageInput,
    analyzer: FaceAnalyzer,
    *,
    face_index: int | None = None,
    metadata: dict[str, Any] | None = None,
    reject_low_quality: bool = False,
    largest: bool = False,
    new_embedder: bool = False,
) -> EnrollResult:
    """Enrol one face of ``image`` as ``name`` (the person is created on first use). Problems with the
    image (unreadable, no face, several faces, already someone else's) give a "refused" result with
    the reason rather than an exception. ``largest``: an image with several faces of similar size gives
    its largest face instead of a refusal. A gallery whose templates are all of other embedders (or
    embedder versions: ``--no-flip``) refuses the image, since identification would never compare it
    with them, unless ``new_embedder`` (what ``reembed`` does on purpose)."""
    name = person_name(name)
    source = describe(image)
    key = EmbedderKey.of(analyzer.embedder)
    mismatch = None if new_embedder else embedder_mismatch(gallery, key)
    if mismatch is not None:
        return EnrollResult(source, name, "refused", mismatch, problem="embedder")
    try:
        digest = content_hash(image)
        person = gallery.find(name)
        if person is not None and gallery.store.find_template(person.id, digest, key) is not None:
            return EnrollResult(source, person.name, "skipped", "already enrolled")
        if face_index is None:
            owners = [gallery.find(pid) for pid in gallery.store.owners_of(digest, key)]
            others = [p.name for p in owners if p is not None and p.name != name]
            if others:
                return EnrollResult(
                    source,
                    name,
                    "refused",
                    f"this image is already enrolled as {others[0]!r}",
                    problem="duplicate",
                )
        faces = analyzer.analyze(image, with_chips=True)
    except FaceprintError as err:
        return EnrollResult(source, name, "refused", str(err), problem="image")
    if not faces:
        return EnrollResult(source, name, "refused", "no face found", problem="no_face")
    note = ""
    if face_index is not None:
        if not 0 <= face_index < len(faces):
            return EnrollResult(source, name, "refused", f"face {face_index} asked for, {len(faces)} found")
        face = faces[face_index]
    else:
        try:
            face = portrait_subject(faces, source)
            if len(faces) > 1:
                note = f"enrolled the main face; ignored {len(faces) - 1} much smaller face(s)"
        except ManyFacesError:
            if not largest:
                reason = f"{len(faces)} faces of similar size found"
                return EnrollResult(source, name, "refused", reason, problem="ambiguous")
            face = subject.largest(faces)
            note = f"enrolled the largest of {len(faces)} faces (several of similar size)"
    flags = quality_flags(face.box, analyzer.quality_chip(face))
    if flags and reject_low_quality:
        reason = f"low quality face: {', '.join(flags)}"
        return EnrollResult(source, name, "refused", reason, flags=flags, problem="quality")
    with gallery.store.transaction():
        pid = gallery.ensure_person(name, metadata)
        template_id = gallery.add_template(
            pid,
            face.embedding,
            embedder=key.name,
            embedder_version=key.version,
            source_path=str(Path(image).resolve()) if isinstance(image, str | PathLike) else None,
            content_hash=digest,
            score=face.score,
            face_size=face_size(face.box),
            quality_flags=flags,
        )
    reasons = [f"low quality face: {', '.join(flags)}" if flags else "", note]
    return EnrollResult(
        source, name, "enrolled", "; ".join(filter(None, reasons)), template_id, flags, face.box
    )


def enroll_dir(
    gallery: Gallery,
    root: Path | str,
    analyzer: FaceAnalyzer,
    *,
    reject_low_quality: bool = False,
    largest: bool = False,
    progress: Callable[[EnrollResult, int, int], None] | None = None,
) -> EnrollReport:
    """Enrol every image of a ``ROOT/NAME/*.jpg`` folder as NAME, skipping what is already enrolled.
    ``progress(result, done, total)`` is called after each image."""
    mismatch = embedder_mismatch(gallery, EmbedderKey.of(analyzer.embedder))
    if mismatch is not None:
        raise GalleryError(f"{gallery.location}: {mismatch}")
    people = labelled_images(root)
    jobs = [(name, path) for name, paths in people.items() for path in paths]
    results = []
    for i, (name, path) in enumerate(jobs, 1):
        result = enroll_folder_image(
            gallery, name, path, analyzer, reject_low_quality=reject_low_quality, largest=largest
        )
        results.append(result)
        if progress is not None:
            progress(result, i, len(jobs))
    return EnrollReport(tuple(results))


def enroll_folder_image(
    gallery: Gallery,
    name: str,
    path: Path,
    analyzer: FaceAnalyzer,
    *,
    reject_low_quality: bool = False,
    largest: bool = False,
) -> EnrollResult:
    """One image of a ``ROOT/NAME/*.jpg`` folder enrolment (here and in ``faceprint.batch``'s workers):
    the folder's name must be a valid person name, then :func:`enroll_image`."""
    try:
        person_name(name)
    except InvalidNameError as err:
        return EnrollResult(str(path), printable(name), "refused", f"folder name: {err}", problem="name")
    return enroll_image(gallery, name, path, analyzer, reject_low_quality=reject_low_quality, largest=largest)


def reembed(
    gallery: Gallery,
    analyzer: FaceAnalyzer,
    *,
    progress: Callable[[EnrollResult, int, int], None] | None = None,
) -> EnrollReport:
    """Give every template of another embedder a twin made with ``analyzer``'s embedder, from the image
    it was enrolled from (switching embedders means re-embedding: vectors of two embedders never compare).

    Templates are kept (the gallery keeps working with the embedder it was built with); a template whose
    image is unavailable is "refused" with the reason: enrolled from bytes, a camera or a video (no stored
    path), the file is gone, or its bytes changed since enrolment. An image already re-embedded for that
    person is "skipped", so an interrupted run resumes cheaply.
    """
    target = EmbedderKey.of(analyzer.embedder)
    names = {p.id: p.name for p in gallery.people()}
    todo = [t for t in gallery.templates() if t.embedder != target]
    results = []
    done: set[tuple[int, str | None]] = set()
    for i, template in enumerate(todo, 1):
        name = names[template.person_id]
        path = Path(template.source_path) if template.source_path else None
        label = str(path) if path is not None else f"template #{template.id} of {name}"
        if (template.person_id, template.content_hash) in done:
            result = EnrollResult(label, name, "skipped", "already re-embedded from this image")
        elif path is None:
            result = EnrollResult(
                label,
                name,
                "refused",
                "no stored image (enrolled from bytes, a camera or a video): enrol this person again",
            )
        elif not path.is_file():
            result = EnrollResult(label, name, "refused", "the image is no longer there")
        elif template.content_hash and content_hash(path) != template.content_hash:
            result = EnrollResult(label, name, "refused", "the image changed since it was enrolled")
        else:
            result = enroll_image(gallery, name, path, analyzer, new_embedder=True)
        done.add((template.person_id, template.content_hash))
        results.append(result)
        if progress is not None:
            progress(result, i, len(todo))
    return EnrollReport(tuple(results))
