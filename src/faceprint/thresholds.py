"""Decision thresholds and calibrated confidence: one table, keyed by embedder name + version.

A :class:`Calibration` holds, for one embedder version:

- the 1:1 distance threshold (``verify``/``compare`` accept "same person" when ``distance <= threshold``)
  and the steepness of the confidence: P(same) = 1 / (1 + exp(slope * (distance - threshold))), a logistic
  fitted on labelled pairs whose 0.5 point is moved onto the threshold, so confidence and decision
  never disagree (it reads as P(same) at the prior odds that make the threshold the even-odds point);
- a :class:`StrangerModel`: how near strangers come to the people of a gallery, from which the
  identification threshold for a gallery of any size is chosen so that the false positive
  identification rate (FPIR: strangers named as someone) stays at a target (default 1%).

The fitting lives with evaluation (``faceprint.evaluation.calibration``); this module only holds the
built-in table and the arithmetic the runtime needs, so that every decision (``compare``, ``verify``,
``identify``, video) reads the same numbers.

Which threshold applies, highest priority first: the caller's ``threshold=``, the gallery's own setting
(``Gallery.set_threshold``), then for identification the FPIR threshold for the gallery's size (target:
``Gallery.set_fpir_target``), for 1:1 decisions the calibration's threshold (stored in the gallery by
``faceprint calibrate --save``, else built in, else the embedder's own ``threshold`` attribute).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from faceprint.errors import FaceprintError, GalleryError
from faceprint.types import EmbedderKey

# Default target for the built-in thresholds: a stranger is compared with every person in a gallery, so
# the per-pair false-accept rate must be small for "unknown" to mean something (users' first complaint).
DEFAULT_TARGET_FAR = 1e-3
# Default target of the identification decision: the fraction of strangers named as someone.
DEFAULT_TARGET_FPIR = 0.01


# Embeddings are unit vectors, so the distance between two lies in [0, 2]: a threshold means something
# only strictly inside that range (0 names nobody, 2 or more names everyone).
MAX_DISTANCE = 2.0


def checked_threshold(value: float | None) -> float | None:
    """``value`` as a distance threshold, or a FaceprintError saying why it cannot be one."""
    if value is None:
        return None
    threshold = float(value)
    if not (math.isfinite(threshold) and 0.0 < threshold < MAX_DISTANCE):
        raise FaceprintError(
            f"a distance threshold must be between 0 and {MAX_DISTANCE:g} (faces are unit vectors, so "
            f"their distances lie in [0, {MAX_DISTANCE:g}]), got {value:g}"
        )
    return threshold


@dataclass(frozen=True)
class StrangerModel:
    """How near strangers come to the people of a gallery, fitted on LFW View 1's training people.

    For a stranger and one person enrolled with a single template, log10 P(distance <= d) is the
    quadratic ``tail`` in d (fitted over the measured 1e-7..5e-2 range; below its vertex only). A person
    whose template is the mean of k >= 2 faces sits closer to everyone, as if every distance were
    ``shift(k)`` smaller. A stranger's distances to different people are taken as independent, so
    FPIR(t) = 1 - prod over people (1 - P(distance <= t)): LFW's training people follow it within their
    sampling noise up to the 3,000 people tried (``bench/calibrate_openset.py`` prints both).
    """

    tail: tuple[float, float, float]  # log10 per-pair false-accept rate = tail[0] d^2 + tail[1] d + tail[2]
    shift_2: float  # shift(2): how much closer a mean of two templates sits to strangers
    shift_per_doubling: float  # shift(k) grows by this much each time k doubles
    slope: float  # steepness of the identification confidence, per unit distance
    source: str

    def shift(self, templates: int) -> float:
        if templates <= 1:
            return 0.0
        return self.shift_2 + self.shift_per_doubling * math.log2(templates / 2)

    def _rising(self) -> tuple[float, float]:
        """The distances over which the fitted quadratic rises (its tail side of the vertex), within the
        range of distances between unit vectors."""
        a, b, _ = self.tail
        if a == 0:
            return 0.0, 2.0
        vertex = -b / (2 * a)
        return (0.0, min(2.0, vertex)) if a < 0 else (max(0.0, vertex), 2.0)

    def pair_far(self, distance: float) -> float:
        """P(a stranger is within ``distance`` of one single-template person)."""
        a, b, c = self.tail
        lo, hi = self._rising()
        d = min(max(distance, lo), hi)  # beyond its rising side the fit means nothing: held flat
        return min(1.0, 10.0 ** (a * d * d + b * d + c))

    def fpir(self, threshold: float, people: Mapping[int, int]) -> float:
        """Expected fraction of strangers within ``threshold`` of someone in a gallery of
        ``people[k]`` people with k templates each (mean-combined)."""
        log_none = 0.0
        for templates, count in people.items():
            far = self.pair_far(threshold + self.shift(templates))
            if far >= 1.0:
                return 1.0
            log_none += count * math.log1p(-far)
        return max(0.0, -math.expm1(log_none))  # max: no '-0.0' for an empty gallery

    def threshold(self, people: Mapping[int, int], target: float = DEFAULT_TARGET_FPIR) -> float:
        """The largest distance threshold whose expected FPIR is at most ``target``."""
        if not 0.0 < target < 1.0:
            raise GalleryError(f"the FPIR target must be between 0 and 1, got {target}")
        if not any(people.values()):
            return 0.0
        lo, hi = self._rising()
        for _ in range(50):  # bisection: FPIR rises with the threshold; 50 halvings reach 1e-15
            mid = (lo + hi) / 2
            if self.fpir(mid, people) > target:
                hi = mid
            else:
                lo = mid
        return lo

    def confidence(self, distance: float | np.ndarray, threshold: float) -> float | np.ndarray:
        """P(the face is the nearest person), 0.5 at the identification threshold in force."""
        return _logistic(self.slope, distance, threshold)


def _logistic(slope: float, distance: float | np.ndarray, centre: float) -> float | np.ndarray:
    d = np.asarray(distance, dtype=np.float64)
    with np.errstate(over="ignore"):
        p = 1.0 / (1.0 + np.exp(slope * (d - centre)))
    return float(p) if p.ndim == 0 else p


@dataclass(frozen=True)
class Calibration:
    """1:1 threshold and P(same | distance) = 1 / (1 + exp(slope * (distance - threshold))), and the
    stranger model of identification."""

    embedder: str
    threshold: float
    slope: float
    far: float  # false-accept rate at ``threshold`` on the calibration pairs
    tar: float  # true-accept rate at ``threshold`` on the calibration pairs
    source: str  # what data produced it
    version: str = ""  # the embedder version it was fitted on ("" in calibrations saved before versions)
    strangers: StrangerModel | None = None  # None: identification uses the 1:1 threshold

    @property
    def key(self) -> EmbedderKey:
        return EmbedderKey(self.embedder, self.version)

    def confidence(self, distance: float | np.ndarray, threshold: float | None = None) -> float | np.ndarray:
        """Calibrated P(same person) in [0, 1], 0.5 at ``threshold`` (default: the calibration's), so
        it is above 0.5 exactly when the decision is "same"; infinite distance gives 0."""
        return _logistic(self.slope, distance, self.threshold if threshold is None else threshold)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        try:
            fields = json.loads(text)
            # Saved before the confidence was centred on the threshold: its own centre no longer applies.
            fields.pop("midpoint", None)
            if fields.get("strangers") is not None:
                fields["strangers"] = StrangerModel(
                    **{**fields["strangers"], "tail": tuple(fields["strangers"]["tail"])}
                )
            return cls(**fields)
        except (TypeError, ValueError, KeyError) as err:
            raise GalleryError(f"unreadable stored calibration ({err})") from err


# The built-in table, fitted on LFW View 1's training people only (peopleDevTrain: 4,038 people, 9,525
# images), so that every open-set figure can be reported on the 1,711 people disjoint from them. The
# default entry is reproduced by `python bench/calibrate_openset.py`, which also checks it on the held-out
# people; its figures are in docs/gallery.md.
_DLIB_FLIP = EmbedderKey("dlib-resnet", "2+flip")  # the default: each face averaged with its mirror
_DLIB_ONE_VIEW = EmbedderKey("dlib-resnet", "2")
_FACENET = EmbedderKey("facenet", "1+margin+flip")  # FaceNet's own box + margin crop
_FACENET_TEMPLATE = EmbedderKey("facenet", "1+template+flip")  # FaceNet's default: 5-point template
_FUSION = EmbedderKey("fusion", "1:dlib-resnet@2+flip+facenet@1+template+flip:w0.7")  # the default
_FUSION_ONE_VIEW = EmbedderKey("fusion", "1:dlib-resnet@2+facenet@1+template:w0.7")  # --no-flip
BUILTIN: dict[EmbedderKey, Calibration] = {
    _DLIB_FLIP: Calibration(
        embedder=_DLIB_FLIP.name,
        version=_DLIB_FLIP.version,
        threshold=0.3766,
        slope=66.50,
        far=0.0010,
        tar=0.9502,
        source="LFW View 1 training people, flip TTA: 23,802 same-person / 2,000,000 different-person pairs",
        strangers=StrangerModel(
            tail=(-40.205, 53.4298, -17.4166),
            shift_2=0.01631,
            shift_per_doubling=0.00943,
            slope=68.06,
            source="LFW View 1 training people (4,038 people, 9,525 images), flip TTA",
        ),
    ),
    # FaceNet (faceprint.embedding.facenet: margin crop, flip TTA): `python bench/calibrate_openset.py
    # --spec facenet:embedder=facenet --embedder facenet`. Its distances spread wider than dlib-resnet's.
    _FACENET: Calibration(
        embedder=_FACENET.name,
        version=_FACENET.version,
        threshold=0.9820,
        slope=24.93,
        far=0.0010,
        tar=0.9669,
        source="LFW View 1 training people, FaceNet: 23,802 same-person / 2,000,000 different-person pairs",
        strangers=StrangerModel(
            tail=(0.95666, 5.29093, -9.09947),
            shift_2=0.00002,
            shift_per_doubling=0.01847,
            slope=22.67,
            source="LFW View 1 training people (4,038 people, 9,525 images), FaceNet",
        ),
    ),
    # FaceNet's default (5-point template, flip): `python bench/calibrate_openset.py --spec
    # facenet:embedder=facenet --embedder facenet` (2026-12-06, detector version 3: the phantom filter
    # drops no LFW subject face, bench/bench_phantoms.py).
    _FACENET_TEMPLATE: Calibration(
        embedder=_FACENET_TEMPLATE.name,
        version=_FACENET_TEMPLATE.version,
        threshold=0.9726,
        slope=25.05,
        far=0.0010,
        tar=0.9749,
        source="LFW View 1 training people, FaceNet template: 23,802 same / 2,000,000 different-person pairs",
        strangers=StrangerModel(
            tail=(2.27183, 4.53765, -9.69882),
            shift_2=0.01591,
            shift_per_doubling=0.01688,
            slope=25.54,
            source="LFW View 1 training people (4,038 people, 9,525 images), FaceNet (template)",
        ),
    ),
    # dlib-resnet + facenet (faceprint.embedding.fusion, weight 0.7): `python bench/calibrate_openset.py
    # --spec fusion:embedder=fusion --embedder fusion` (2026-12-06, as FaceNet's above).
    _FUSION: Calibration(
        embedder=_FUSION.name,
        version=_FUSION.version,
        threshold=0.6346,
        slope=39.92,
        far=0.0010,
        tar=0.9828,
        source="LFW View 1 training people, fusion: 23,802 same-person / 2,000,000 different-person pairs",
        strangers=StrangerModel(
            tail=(6.52176, 6.52476, -9.92083),
            shift_2=0.02560,
            shift_per_doubling=0.01466,
            slope=45.00,
            source="LFW View 1 training people (4,038 people, 9,525 images), fusion",
        ),
    ),
    # fusion, one view per face (--no-flip): `python bench/calibrate_openset.py --spec
    # fusion-oneview:embedder=fusion,flip=off --embedder fusion` (2026-12-06, detector version 4).
    _FUSION_ONE_VIEW: Calibration(
        embedder=_FUSION_ONE_VIEW.name,
        version=_FUSION_ONE_VIEW.version,
        threshold=0.6392,
        slope=39.09,
        far=0.0010,
        tar=0.9813,
        source="LFW View 1 training people, fusion one view: 23,802 same / 2,000,000 different-person pairs",
        strangers=StrangerModel(
            tail=(6.07575, 7.21257, -10.25079),
            shift_2=0.02677,
            shift_per_doubling=0.01493,
            slope=44.59,
            source="LFW View 1 training people (4,038 people, 9,525 images), fusion one view",
        ),
    ),
    # One view per face: `python bench/calibrate_openset.py --spec oneview:flip=off`.
    _DLIB_ONE_VIEW: Calibration(
        embedder=_DLIB_ONE_VIEW.name,
        version=_DLIB_ONE_VIEW.version,
        threshold=0.3841,
        slope=67.01,
        far=0.0010,
        tar=0.9360,
        source="LFW View 1 training people, one view: 23,802 same-person / 2,000,000 different-person pairs",
        strangers=StrangerModel(
            tail=(-43.6405, 56.3697, -18.1836),
            shift_2=0.01644,
            shift_per_doubling=0.00979,
            slope=63.78,
            source="LFW View 1 training people (4,038 people, 9,525 images), one view",
        ),
    ),
}


def builtin_calibration(key: EmbedderKey) -> Calibration | None:
    """The built-in calibration of one embedder version, else None. Jittered views ("+jitterN") use the
    calibration of the same version without jitter: their FAR 1e-3 distance on the LFW pairs is close
    to it (bench/bench_tta_lfw.py prints the gap)."""
    for version in (key.version, re.sub(r"\+jitter\d+", "", key.version)):
        found = BUILTIN.get(EmbedderKey(key.name, version))
        if found is not None:
            return found
    return None


def fallback_calibration(key: EmbedderKey, threshold: float) -> Calibration:
    """For an embedder without any calibration: centre the confidence on its own threshold, borrowing
    the steepness of the default dlib-resnet calibration. Marked in ``source``: run ``faceprint
    calibrate``."""
    return Calibration(
        embedder=key.name,
        version=key.version,
        threshold=threshold,
        slope=BUILTIN[_DLIB_FLIP].slope,
        far=math.nan,
        tar=math.nan,
        source="uncalibrated: centred on the embedder's own threshold",
    )


def calibration_for(key: EmbedderKey, embedder_threshold: float | None = None) -> Calibration:
    """The built-in calibration of ``key``, else a fallback centred on the embedder's own threshold;
    GalleryError when there is neither."""
    found = builtin_calibration(key)
    if found is not None:
        return found
    if embedder_threshold is None:
        raise GalleryError(f"no calibrated threshold for embedder {key}; pass one")
    return fallback_calibration(key, embedder_threshold)


def embedder_calibration(embedder: Any) -> Calibration:
    """The calibration of an embedder instance, without any gallery setting: what ``compare`` uses."""
    return calibration_for(EmbedderKey.of(embedder), getattr(embedder, "threshold", None))
