"""Importing a face data set into (image, identity, attributes) samples and optional evaluation pairs.

Layouts: identity folders (ROOT/NAME/*.jpg), CelebA (img_align_celeba/ + identity_CelebA.txt, with
list_attr_celeba.txt when present) and LFW (identity folders + a people file and/or a pairs file).
Sources are paths relative to the root, so a prepared folder is independent of where the data sits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from faceprint.errors import FaceprintError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUTS = ("folders", "celeba", "lfw")


@dataclass(frozen=True)
class Sample:
    source: str  # path relative to the data set root
    identity: str
    attributes: dict[str, int] = field(default_factory=dict)  # e.g. {"Male": 1, "Eyeglasses": 0}


@dataclass(frozen=True)
class Pair:
    first: str  # sources
    second: str
    same: bool
    fold: int


@dataclass(frozen=True)
class Imported:
    root: Path
    layout: str
    samples: tuple[Sample, ...]
    pairs: tuple[Pair, ...] = ()


def import_dataset(
    root: Path, layout: str = "auto", *, people: Path | None = None, pairs: Path | None = None
) -> Imported:
    """Read ``root`` in ``layout`` ("auto" picks CelebA when identity_CelebA.txt is there, else folders;
    LFW is folders plus ``people`` and/or ``pairs`` protocol files)."""
    root = Path(root)
    if not root.is_dir():
        raise FaceprintError(f"{root}: no such data folder")
    if layout == "auto":
        layout = "celeba" if (root / "identity_CelebA.txt").is_file() else "folders"
        if layout == "folders" and (people or pairs):
            layout = "lfw"
    if layout == "celeba":
        return import_celeba(root)
    if layout == "folders":
        return Imported(root, "folders", tuple(_folder_samples(root)))
    if layout == "lfw":
        return import_lfw(root, people=people, pairs=pairs)
    raise FaceprintError(f"unknown layout {layout!r}; choose one of auto, {', '.join(LAYOUTS)}")


def _folder_samples(root: Path, names: set[str] | None = None) -> list[Sample]:
    samples = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        if names is not None and person.name not in names:
            continue
        for img in sorted(person.iterdir()):
            if img.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(f"{person.name}/{img.name}", person.name))
    if not samples:
        raise FaceprintError(f"{root}: no images found in identity folders (expected ROOT/NAME/*.jpg)")
    return samples


def import_celeba(root: Path) -> Imported:
    ids_file = root / "identity_CelebA.txt"
    images = root / "img_align_celeba"
    if not ids_file.is_file() or not images.is_dir():
        raise FaceprintError(f"{root}: a CelebA folder needs img_align_celeba/ and identity_CelebA.txt")
    attributes = _celeba_attributes(root / "list_attr_celeba.txt")
    samples = []
    for n, line in enumerate(ids_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise FaceprintError(f"{ids_file}:{n}: expected 'IMAGE IDENTITY', got {line!r}")
        samples.append(Sample(f"img_align_celeba/{parts[0]}", parts[1], attributes.get(parts[0], {})))
    return Imported(root, "celeba", tuple(samples))


def _celeba_attributes(path: Path) -> dict[str, dict[str, int]]:
    """list_attr_celeba.txt: a count line, a line of attribute names, then 'IMAGE v1 v2 ...' with +-1."""
    if not path.is_file():
        return {}
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise FaceprintError(f"{path}: expected a count line and a header line of attribute names")
    names = lines[1].split()
    table = {}
    for n, line in enumerate(lines[2:], 3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise FaceprintError(f"{path}:{n}: {len(parts) - 1} values for {len(names)} attributes")
        table[parts[0]] = {a: int(int(v) > 0) for a, v in zip(names, parts[1:], strict=True)}
    return table


def import_lfw(root: Path, *, people: Path | None = None, pairs: Path | None = None) -> Imported:
    """LFW folders restricted to a people file's identities (training), plus a pairs file's images."""
    pair_list = read_lfw_pairs(pairs) if pairs else []
    if people:
        names = set(read_lfw_people(people))
        samples = _folder_samples(root, names)
    else:
        samples = []
    known = {s.source for s in samples}
    for pair in pair_list:
        for source in (pair.first, pair.second):
            if source not in known:
                if not (root / source).is_file():
                    raise FaceprintError(f"{pairs}: image {source} is not in {root}")
                samples.append(Sample(source, source.split("/")[0]))
                known.add(source)
    if not samples:
        samples = _folder_samples(root)
    return Imported(root, "lfw", tuple(samples), tuple(pair_list))


def lfw_source(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_lfw_people(path: Path) -> list[str]:
    """Names of an LFW people file (peopleDevTrain.txt: a count then 'NAME N'; people.txt: folds)."""
    names = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and not parts[0].isdigit():
            names.append(parts[0])
    if not names:
        raise FaceprintError(f"{path}: no 'NAME COUNT' lines; is it an LFW people file?")
    return names


def read_lfw_pairs(path: Path) -> list[Pair]:
    """An LFW pairs file: a header ('N' or 'FOLDS N'), then 'NAME I J' (same) or 'NAME1 I NAME2 J'."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines or not all(v.isdigit() for v in lines[0]):
        raise FaceprintError(f"{path}: the first line must be 'N' or 'FOLDS N'")
    per_fold = 2 * int(lines[0][-1])  # each fold holds N same and N different pairs
    pairs = []
    for n, parts in enumerate(lines[1:]):
        fold = n // per_fold
        if len(parts) == 3:
            pairs.append(Pair(lfw_source(parts[0], parts[1]), lfw_source(parts[0], parts[2]), True, fold))
        elif len(parts) == 4:
            pairs.append(Pair(lfw_source(parts[0], parts[1]), lfw_source(parts[2], parts[3]), False, fold))
        else:
            raise FaceprintError(f"{path}:{n + 2}: expected 3 or 4 fields, got {' '.join(parts)!r}")
    return pairs
