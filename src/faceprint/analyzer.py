"""FaceAnalyzer: the front door composing detect -> align -> embed.

Every client (gallery, evaluation, training data prep, video, CLI, service) goes through this class
rather than calling the stages itself, so a detector or embedder swap happens in one place.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from faceprint import models
from faceprint.alignment import chip_specs, cut_chips
from faceprint.detection import Detector
from faceprint.embedding import Embedder
from faceprint.errors import ManyFacesError, NoFaceError
from faceprint.io import ImageInput, describe, load_image
from faceprint.types import Detection, Face


class FaceAnalyzer:
    """Find, align and embed every face in an image.

    ``detector``/``embedder`` are registry names (see ``faceprint.models.available()``), a path to a
    trained embedder file, or ready instances. Nothing loads until the first call that needs it.
    """

    def __init__(
        self,
        detector: str | Detector = models.DEFAULT_DETECTOR,
        embedder: str | Embedder = models.DEFAULT_EMBEDDER,
        *,
        detector_options: dict[str, Any] | None = None,
        embedder_options: dict[str, Any] | None = None,
    ) -> None:
        self._detector_spec = detector
        self._embedder_spec = embedder
        self._detector_options = detector_options or {}
        self._embedder_options = embedder_options or {}
        self._detector: Detector | None = None if isinstance(detector, str) else detector
        self._embedder: Embedder | None = None if isinstance(embedder, str) else embedder
        self._lock = threading.Lock()

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            with self._lock:
                if self._detector is None:
                    self._detector = models.create(
                        str(self._detector_spec), "detector", **self._detector_options
                    )
        return self._detector

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = models.create(
                        str(self._embedder_spec), "embedder", **self._embedder_options
                    )
        return self._embedder

    def detect(self, image: ImageInput) -> list[Detection]:
        """Boxes, scores and 5 landmarks of every face, highest score first."""
        return self.detector.detect(load_image(image))

    def align(self, image: ImageInput, detections: Sequence[Detection]) -> np.ndarray:
        """The embedder's chips (N, S, S, 3), one per detection, cut as it asks (alignment.chip_specs)."""
        specs = chip_specs(self.embedder)
        return cut_chips(load_image(image), [(d.box, d.landmarks) for d in detections], specs)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings (N, D) of aligned RGB uint8 chips (N, S, S, 3)."""
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        return self.embedder.embed(chips)

    def analyze(self, image: ImageInput, *, with_chips: bool = False) -> list[Face]:
        """Every face with box, score, landmarks and embedding (and its aligned chip on request)."""
        return self.analyze_batch([image], with_chips=with_chips)[0]

    def analyze_one(self, image: ImageInput, *, with_chips: bool = False) -> Face:
        """The one face an image is about (see :func:`primary_face`); NoFaceError/ManyFacesError if none."""
        return primary_face(self.analyze(image, with_chips=with_chips), describe(image))

    def analyze_batch(self, images: Sequence[ImageInput], *, with_chips: bool = False) -> list[list[Face]]:
        """``analyze`` over several images: one detector batch and one embedder batch for all faces."""
        arrays = [load_image(img) for img in images]
        per_image = self.detector.detect_batch(arrays)
        embedder = self.embedder
        specs = chip_specs(embedder)
        chips_per_image = [
            cut_chips(arr, [(d.box, d.landmarks) for d in dets], specs)
            for arr, dets in zip(arrays, per_image, strict=True)
        ]
        all_chips = [c for chips in chips_per_image for c in chips]
        vectors = (
            embedder.embed(np.stack(all_chips)) if all_chips else np.zeros((0, embedder.dim), np.float32)
        )
        results: list[list[Face]] = []
        k = 0
        for dets, chips in zip(per_image, chips_per_image, strict=True):
            faces = []
            for det, chip in zip(dets, chips, strict=True):
                faces.append(
                    Face(det.box, det.score, det.landmarks, vectors[k], chip if with_chips else None)
                )
                k += 1
            results.append(faces)
        return results


# A face whose box side is under this fraction of the largest one's is background (a passer-by, a poster,
# a false detection) and does not make a portrait ambiguous.
BACKGROUND_FACE_RATIO = 0.5


def primary_face(faces: Sequence[Face], source: str = "image") -> Face:
    """The single subject of a portrait: the largest face, provided no other face is comparable in size.

    Raises NoFaceError when there is no face and ManyFacesError when two or more faces are of similar
    size, so that commands needing one face never silently pick the wrong person.
    """
    if not faces:
        raise NoFaceError(f"{source}: no face found")
    by_size = sorted(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)
    if len(by_size) > 1:
        side = [np.sqrt((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])) for f in by_size[:2]]
        if side[1] >= BACKGROUND_FACE_RATIO * side[0]:
            raise ManyFacesError(
                f"{source}: {len(faces)} faces of similar size found; use an image with one person "
                "or crop it to the face you mean"
            )
    return by_size[0]
