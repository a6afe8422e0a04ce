"""Importing a face data set into (image, identity, attributes) samples and optional evaluation pairs.

Layouts: identity folders (ROOT/NAME/*.jpg), CelebA (img_align_celeba/ + identity_CelebA.txt, with
list_attr_celeba.txt when present) and LFW (identity folders + a people file and/or a pairs file).
Sources are paths relative to the root, so a prepared folder is independent of where the data sits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from faceprint.errors import FaceprintError
from faceprint.evaluation.pairs import Pair, read_lfw_pairs, read_lfw_people
from faceprint.io import labelled_images

LAYOUTS = ("folders", "celeba", "lfw")


@dataclass(frozen=True)
class Sample:
    source: str  # path relative to the data set root
    identity: str
    attributes: dict[str, int] = field(default_factory=dict)  # e.g. {"Male": 1, "Eyeglasses": 0}


@dataclass(frozen=True)
class Imported:
    root: Path
    layout: str
    samples: tuple[Sample, ...]
    pairs: tuple[Pair, ...] = ()  # evaluation pairs (images under ``root``)

    def source(self, path: Path) -> str:
        """The sample source of an image under ``root`` (relative, with forward slashes)."""
        return Path(path).relative_to(self.root).as_posix()


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
    samples = [
        Sample(f"{person}/{img.name}", person)
        for person, images in labelled_images(root).items()
        if names is None or person in names
        for img in images
    ]
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
    pair_list = read_lfw_pairs(pairs, root).pairs if pairs else ()
    samples = _folder_samples(root, set(read_lfw_people(people))) if people else []
    imported = Imported(root, "lfw", (), pair_list)
    known = {s.source for s in samples}
    for pair in pair_list:
        for path in (pair.a, pair.b):
            source = imported.source(path)
            if source not in known:
                samples.append(Sample(source, path.parent.name))
                known.add(source)
    if not samples:
        samples = _folder_samples(root)
    return Imported(root, "lfw", tuple(samples), pair_list)
