"""Reading a prepared data folder (written by :mod:`faceprint.training.prepare`).

Layout: ``dataset.json`` (chip size, alignment template, how it was made), ``manifest.csv`` (one row per
source image with every decision), ``chips/`` (aligned RGB chips of the kept images), optionally
``pairs.csv`` (evaluation pairs of a pairs protocol, by source path).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceprint.embedding.architectures import resize_chips
from faceprint.errors import FaceprintError
from faceprint.io import load_image

MANIFEST_FIELDS = (
    "source",
    "identity",
    "split",
    "status",
    "reason",
    "chip",
    "faces",
    "score",
    "face_size",
    "sharpness",
    "attributes",
)


@dataclass(frozen=True)
class ChipSet:
    """Aligned chips of one split with integer labels (0..C-1 in order of ``identities``)."""

    images: np.ndarray  # (N, S, S, 3) uint8 RGB
    labels: np.ndarray  # (N,) int64
    identities: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class ChipPairs:
    """Evaluation pairs over a chip array: indices into ``images`` and whether they show one person."""

    images: np.ndarray  # (M, S, S, 3) uint8 RGB
    first: np.ndarray  # (P,) int64
    second: np.ndarray  # (P,) int64
    same: np.ndarray  # (P,) bool
    fold: np.ndarray  # (P,) int64, the protocol's fold (0 when it has none)


@dataclass(frozen=True)
class DatasetInfo:
    chip_size: int
    template: np.ndarray  # (5, 2) float32 landmark positions in the chip


def read_info(root: Path) -> DatasetInfo:
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise FaceprintError(
            f"{root}: not a prepared data folder (no dataset.json); run `faceprint data prepare`"
        )
    info = json.loads(path.read_text())
    return DatasetInfo(int(info["chip_size"]), np.asarray(info["template"], np.float32))


def read_manifest(root: Path) -> list[dict[str, str]]:
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise FaceprintError(f"{root}: no manifest.csv; run `faceprint data prepare` to completion")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_split(root: Path, split: str, size: int | None = None) -> ChipSet:
    """The kept chips of ``split`` ("train", "val", "test"), resized to ``size`` if given."""
    root = Path(root)
    rows = [r for r in read_manifest(root) if r["split"] == split and r["status"] == "kept"]
    if not rows:
        raise FaceprintError(f"{root}: the {split!r} split has no kept images")
    identities = tuple(sorted({r["identity"] for r in rows}))
    index = {name: i for i, name in enumerate(identities)}
    images = _load_chips(root, [r["chip"] for r in rows], size)
    labels = np.array([index[r["identity"]] for r in rows], np.int64)
    return ChipSet(images, labels, identities, tuple(r["source"] for r in rows))


def load_pairs(root: Path, size: int | None = None) -> ChipPairs:
    """The protocol pairs of the folder whose two images were both kept."""
    root = Path(root)
    path = root / "pairs.csv"
    if not path.is_file():
        raise FaceprintError(f"{root}: no pairs.csv (the folder was not prepared from a pairs protocol)")
    chips = {r["source"]: r["chip"] for r in read_manifest(root) if r["status"] == "kept"}
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["first"] in chips and r["second"] in chips]
    if not rows:
        raise FaceprintError(f"{path}: no pair has both images kept")
    sources = sorted({r[k] for r in rows for k in ("first", "second")})
    where = {s: i for i, s in enumerate(sources)}
    return ChipPairs(
        images=_load_chips(root, [chips[s] for s in sources], size),
        first=np.array([where[r["first"]] for r in rows], np.int64),
        second=np.array([where[r["second"]] for r in rows], np.int64),
        same=np.array([r["same"] == "1" for r in rows]),
        fold=np.array([int(r["fold"]) for r in rows], np.int64),
    )


def _load_chips(root: Path, relpaths: list[str], size: int | None) -> np.ndarray:
    chips = np.stack([load_image(root / p) for p in relpaths])
    return chips if size is None else resize_chips(chips, size)


def make_pairs(chips: ChipSet, max_pairs: int = 3000, seed: int = 0) -> ChipPairs:
    """Balanced verification pairs within a split: up to ``max_pairs // 2`` same-person pairs (spread over
    identities) and as many different-person pairs, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    by_label = [np.flatnonzero(chips.labels == c) for c in range(len(chips.identities))]
    positives = [(int(i), int(j)) for idx in by_label for a, i in enumerate(idx) for j in idx[a + 1 :]]
    if not positives or len(by_label) < 2:
        raise FaceprintError("validation needs two identities or more, one of them with two kept images")
    half = min(max_pairs // 2, len(positives))
    chosen = [positives[i] for i in rng.choice(len(positives), size=half, replace=False)]
    negatives: list[tuple[int, int]] = []
    while len(negatives) < half:
        i, j = (int(v) for v in rng.integers(0, len(chips.labels), size=2))
        if chips.labels[i] != chips.labels[j]:
            negatives.append((i, j))
    pairs = np.array(chosen + negatives, np.int64)
    same = np.array([True] * half + [False] * half)
    return ChipPairs(chips.images, pairs[:, 0], pairs[:, 1], same, np.zeros(len(same), np.int64))
