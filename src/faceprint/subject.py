"""Which face an image is about: the one home of the "subject face" policy, as named strategies.

Every stage that reduces an image's faces to one goes through here: the analyzer and enrolment (a
portrait's subject, refusing ambiguous images), the detector's ``select`` option, data preparation and
the evaluation runner. Faces are anything with a ``box`` ``(x1, y1, x2, y2)`` (Detection, Face).

- ``largest``: the largest box (a portrait's sitter is nearest the camera).
- ``central``: the box whose centre is nearest the image centre.
- ``largest-central``: area minus a penalty on the squared centre offset (evaluation: LFW's labelled
  subject is the central face, and a bystander is often larger).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Protocol, TypeVar

from faceprint.errors import ManyFacesError, NoFaceError

Strategy = Literal["largest", "central", "largest-central"]
STRATEGIES: tuple[Strategy, ...] = ("largest", "central", "largest-central")

# A face whose box side is under this fraction of the largest one's is background (a passer-by, a poster,
# a false detection) and does not make a portrait ambiguous.
BACKGROUND_FACE_RATIO = 0.5
# Weight of the squared centre offset (pixels^2) against the box area (pixels^2) in "largest-central".
CENTRE_PENALTY = 2.0


class Boxed(Protocol):
    @property
    def box(self) -> tuple[float, float, float, float]: ...


F = TypeVar("F", bound=Boxed)


def area(face: Boxed) -> float:
    x1, y1, x2, y2 = face.box
    return (x2 - x1) * (y2 - y1)


def centre_offset2(face: Boxed, shape: tuple[int, ...]) -> float:
    """Squared distance (pixels^2) from the box centre to the centre of an image of ``shape`` (h, w, ...)."""
    x1, y1, x2, y2 = face.box
    return ((x1 + x2) / 2 - shape[1] / 2.0) ** 2 + ((y1 + y2) / 2 - shape[0] / 2.0) ** 2


def largest(faces: Sequence[F]) -> F:
    """The face with the largest box (the first of equals)."""
    return max(faces, key=area)


def most_central(faces: Sequence[F], shape: tuple[int, ...]) -> F:
    """The face whose box centre is nearest the image centre (the first of equals)."""
    return min(faces, key=lambda f: centre_offset2(f, shape))


def largest_central(faces: Sequence[F], shape: tuple[int, ...], penalty: float = CENTRE_PENALTY) -> F:
    """The face with the best area minus ``penalty`` x squared centre offset."""
    return max(faces, key=lambda f: area(f) - penalty * centre_offset2(f, shape))


def pick(faces: Sequence[F], strategy: Strategy, shape: tuple[int, ...]) -> F | None:
    """The subject of an image of ``shape`` by ``strategy``; None when there is no face."""
    if not faces:
        return None
    if strategy == "largest":
        return largest(faces)
    if strategy == "central":
        return most_central(faces, shape)
    if strategy == "largest-central":
        return largest_central(faces, shape)
    raise ValueError(f"unknown subject strategy {strategy!r}; known: {', '.join(STRATEGIES)}")


def rivals(faces: Sequence[F], area_ratio: float) -> list[F]:
    """The faces at least ``area_ratio`` times as large (in area) as the largest: candidates for the
    subject that size alone cannot tell apart."""
    top = max(area(f) for f in faces)
    return [f for f in faces if area(f) >= area_ratio * top]


def portrait_subject(faces: Sequence[F], source: str = "image") -> F:
    """The single subject of a portrait: the largest face, provided no other face is comparable in size
    (its box side at least :data:`BACKGROUND_FACE_RATIO` of the largest's).

    Raises NoFaceError when there is no face and ManyFacesError when two or more faces are of similar
    size, so that commands needing one face never silently pick the wrong person.
    """
    if not faces:
        raise NoFaceError(f"{source}: no face found")
    by_size = sorted(faces, key=area, reverse=True)
    if len(by_size) > 1 and math.sqrt(area(by_size[1])) >= BACKGROUND_FACE_RATIO * math.sqrt(
        area(by_size[0])
    ):
        raise ManyFacesError(
            f"{source}: {len(faces)} faces of similar size found; use an image with one person "
            "or crop it to the face you mean"
        )
    return by_size[0]
