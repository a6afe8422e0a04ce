"""FaceAnalyzer: the front door composing detect -> align -> embed.

Every client (gallery, evaluation, training data prep, video, CLI, service) goes through this class
rather than calling the stages itself, so a detector or embedder swap happens in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from faceprint import models
from faceprint.alignment import chip_specs, cut_chips, split_chips
from faceprint.detection import Detector
from faceprint.embedding import Embedder
from faceprint.io import ImageInput, describe, load_image
from faceprint.models import Lazy
from faceprint.subject import portrait_subject
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
        # What another process needs to build the same analyzer (see __reduce__).
        self._recipe = (detector, embedder, dict(detector_options or {}), dict(embedder_options or {}))
        self._detector: Lazy[Detector] = _model(detector, "detector", detector_options)
        self._embedder: Lazy[Embedder] = _model(embedder, "embedder", embedder_options)

    @property
    def detector(self) -> Detector:
        return self._detector.get()

    @property
    def embedder(self) -> Embedder:
        return self._embedder.get()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its recipe (model names and options), never its loaded models: a worker process
        (a Ray actor) rebuilds the same analyzer and loads the models once, itself."""
        if not all(isinstance(spec, str) for spec in self._recipe[:2]):
            raise TypeError("only a FaceAnalyzer built from model names can be sent to another process")
        return (_rebuild, self._recipe)

    def detect(self, image: ImageInput) -> list[Detection]:
        """Boxes, scores and 5 landmarks of every face, highest score first."""
        return self.detector.detect(load_image(image))

    def align(self, image: ImageInput, detections: Sequence[Detection]) -> np.ndarray:
        """The embedder's chips (N, S, S, 3), one per detection, cut as it asks (alignment.chip_specs)."""
        specs = chip_specs(self.embedder)
        return cut_chips(load_image(image), [(d.box, d.landmarks) for d in detections], specs)

    def quality_chip(self, face: Face) -> np.ndarray | None:
        """The chip a face's quality is judged on (``quality.quality_flags``): its first chip. An embedder
        that combines networks cuts one chip each, side by side; the seam and the black padding between
        them would read as detail. None when the face carries no chip."""
        if face.chip is None:
            return None
        return split_chips(face.chip[None], chip_specs(self.embedder))[0][0]

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
        """The one face an image is about (:func:`faceprint.subject.portrait_subject`); NoFaceError or
        ManyFacesError when there is none or no single one."""
        return portrait_subject(self.analyze(image, with_chips=with_chips), describe(image))

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


def _model(spec: Any, kind: str, options: dict[str, Any] | None) -> Lazy[Any]:
    """A registry name or file path, created on first use; or a ready instance, used as it is."""
    if isinstance(spec, str):
        return Lazy(lambda: models.create(spec, kind, **(options or {})))
    return Lazy(lambda: spec)


def _rebuild(
    detector: str, embedder: str, detector_options: dict[str, Any], embedder_options: dict[str, Any]
) -> FaceAnalyzer:
    return FaceAnalyzer(
        detector, embedder, detector_options=detector_options, embedder_options=embedder_options
    )
