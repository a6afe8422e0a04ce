"""Verification pairs: LFW-format pairs files, and balanced pairs generated from a labelled folder.

A labelled folder is ``ROOT/NAME/*.jpg`` (any image extension of :data:`faceprint.io.IMAGE_EXTENSIONS`):
one sub-folder per person, walked by :func:`faceprint.io.labelled_images`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceprint.evaluation import EvaluationError
from faceprint.io import labelled_images


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool
    fold: int


@dataclass(frozen=True)
class PairSet:
    """Pairs with their fold numbers (0-based) and where they came from, for the report."""

    pairs: tuple[Pair, ...]
    n_folds: int
    source: str

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def images(self) -> tuple[Path, ...]:
        """Every image the pairs use, each once, in first-use order."""
        return tuple(dict.fromkeys(p for pair in self.pairs for p in (pair.a, pair.b)))

    @property
    def same(self) -> np.ndarray:
        return np.array([p.same for p in self.pairs], dtype=bool)

    @property
    def folds(self) -> np.ndarray:
        return np.array([p.fold for p in self.pairs], dtype=np.int64)

    def distances(self, embeddings: Mapping[Path, np.ndarray]) -> np.ndarray:
        """Euclidean distance of every pair, given an embedding for each image."""
        missing = [p for p in self.images if p not in embeddings]
        if missing:
            raise EvaluationError(f"no embedding for {len(missing)} pair image(s), e.g. {missing[0]}")
        a = np.stack([embeddings[p.a] for p in self.pairs])
        b = np.stack([embeddings[p.b] for p in self.pairs])
        return np.linalg.norm(a - b, axis=1)


def lfw_image_path(root: Path, name: str, number: int) -> Path:
    return root / name / f"{name}_{number:04d}.jpg"


def read_lfw_pairs(pairs_file: Path | str, images_root: Path | str) -> PairSet:
    """Parse an LFW pairs file: a header "FOLDS N" (or just "N" for one fold), then per fold N same-person
    lines "name n1 n2" followed by N different-person lines "name1 n1 name2 n2". Every image must exist
    under ``images_root`` as NAME/NAME_%04d.jpg."""
    path, root = Path(pairs_file), Path(images_root)
    try:
        lines = [ln.split() for ln in path.read_text().splitlines()]
    except OSError as e:
        raise EvaluationError(f"{path}: cannot read pairs file ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise EvaluationError(f"{path}: not a text pairs file") from e
    if not lines or not 1 <= len(lines[0]) <= 2 or not all(x.isdigit() for x in lines[0]):
        raise EvaluationError(f"{path}:1: expected a header 'FOLDS PAIRS_PER_HALF_FOLD' such as '10 300'")
    head = [int(x) for x in lines[0]]
    n_folds, per_half = (head[0], head[1]) if len(head) == 2 else (1, head[0])
    body = [(i + 2, ln) for i, ln in enumerate(lines[1:]) if ln]
    if len(body) != 2 * n_folds * per_half:
        raise EvaluationError(
            f"{path}: header promises {n_folds} folds x {2 * per_half} pairs = {2 * n_folds * per_half} "
            f"lines, found {len(body)}"
        )
    pairs = []
    for k, (lineno, fields) in enumerate(body):
        fold, same = k // (2 * per_half), (k % (2 * per_half)) < per_half
        try:
            if same and len(fields) == 3:
                a = lfw_image_path(root, fields[0], int(fields[1]))
                b = lfw_image_path(root, fields[0], int(fields[2]))
            elif not same and len(fields) == 4:
                a = lfw_image_path(root, fields[0], int(fields[1]))
                b = lfw_image_path(root, fields[2], int(fields[3]))
            else:
                kind = "same-person 'name n1 n2'" if same else "different-person 'name1 n1 name2 n2'"
                raise EvaluationError(f"{path}:{lineno}: expected a {kind} line, got {' '.join(fields)!r}")
        except ValueError as e:
            raise EvaluationError(f"{path}:{lineno}: image numbers must be integers") from e
        pairs.append(Pair(a, b, same, fold))
    pair_set = PairSet(tuple(pairs), n_folds, f"{path} ({n_folds} folds x {2 * per_half} pairs)")
    missing = [p for p in pair_set.images if not p.is_file()]
    if missing:
        raise EvaluationError(
            f"{path}: {len(missing)} image(s) named in the pairs file are missing under {root}, "
            f"e.g. {missing[0]}"
        )
    return pair_set


def folder_pairs(
    root: Path | str,
    n_pairs: int = 6000,
    *,
    seed: int = 0,
    n_folds: int = 10,
    exclude: Collection[Path] = frozenset(),
) -> PairSet:
    """Balanced pairs from a labelled folder: half same-person, half different-person, no pair twice,
    reproducible for a given seed. When the folder has fewer distinct same-person pairs than
    ``n_pairs / 2``, all of them are used and as many different-person pairs (the count is in ``source``).
    Folds are assigned round-robin within each half, so every fold is balanced too. Images in
    ``exclude`` (unreadable ones, say) are left out."""
    if n_pairs < 2 or n_folds < 1:
        raise EvaluationError(f"need at least 2 pairs and 1 fold, got {n_pairs} pairs and {n_folds} folds")
    people = usable_images(root, exclude)
    names = list(people)
    multi = [n for n in names if len(people[n]) >= 2]
    if not multi or len(names) < 2:
        raise EvaluationError(
            f"{root}: pairs need at least one person with 2+ images and 2 people "
            f"(found {len(names)} people, {len(multi)} with 2+ images)"
        )
    rng = np.random.default_rng(seed)
    available = sum(len(people[n]) * (len(people[n]) - 1) // 2 for n in multi)
    half = min(n_pairs // 2, available)
    if available >= 2 * half:
        # Person-uniform draws (as LFW's pairs are), so one prolific person cannot dominate.
        same = _sample_unique(half, lambda: _same_pair(rng, people, multi))
    else:  # close to exhausting them: enumerate and pick, rejection would stall
        every = [(people[n][i], people[n][j]) for n in multi for i, j in _index_pairs(len(people[n]))]
        same = [every[k] for k in rng.choice(len(every), size=half, replace=False)]
    diff = _sample_unique(half, lambda: _diff_pair(rng, people, names))
    pairs = [Pair(a, b, True, i % n_folds) for i, (a, b) in enumerate(same)]
    pairs += [Pair(a, b, False, i % n_folds) for i, (a, b) in enumerate(diff)]
    source = f"{root} ({2 * half} generated pairs: {half} same, {half} different; seed {seed})"
    return PairSet(tuple(pairs), n_folds, source)


People = dict[str, list[Path]]


def _same_pair(rng: np.random.Generator, people: People, multi: list[str]) -> tuple[Path, Path]:
    images = people[multi[rng.integers(len(multi))]]
    i, j = rng.choice(len(images), size=2, replace=False)
    return images[i], images[j]


def _diff_pair(rng: np.random.Generator, people: People, names: list[str]) -> tuple[Path, Path]:
    p, q = rng.choice(len(names), size=2, replace=False)
    a, b = people[names[p]], people[names[q]]
    return a[rng.integers(len(a))], b[rng.integers(len(b))]


def _index_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def _sample_unique(count: int, draw: Callable[[], tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """``count`` distinct unordered pairs by rejection; gives up with an error rather than loop forever."""
    seen: dict[frozenset[Path], tuple[Path, Path]] = {}
    attempts = 0
    while len(seen) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise EvaluationError(f"could only draw {len(seen)} distinct pairs of the {count} asked for")
        a, b = draw()
        seen.setdefault(frozenset((a, b)), (a, b))
    return list(seen.values())


def read_lfw_people(path: Path | str) -> dict[str, int]:
    """``{person: image count}`` of an LFW people file (``peopleDevTrain.txt``: a count line, then
    ``NAME COUNT`` lines; ``people.txt``: folds of such blocks, each after its own count line)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise EvaluationError(f"{path}: cannot read ({e.strerror or e})") from e
    people = {}
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) == 2:
            try:
                people[parts[0]] = int(parts[1])
            except ValueError as e:
                raise EvaluationError(f"{path}:{lineno}: expected NAME COUNT, got {line!r}") from e
        elif len(parts) > 2:
            raise EvaluationError(f"{path}:{lineno}: expected NAME COUNT, got {line!r}")
    if not people:
        raise EvaluationError(f"{path}: no people listed")
    return people


def usable_images(root: Path | str, exclude: Collection[Path] = frozenset()) -> dict[str, list[Path]]:
    """``labelled_images(root)`` without the images in ``exclude`` (people left with none dropped)."""
    people = {name: [p for p in paths if p not in exclude] for name, paths in labelled_images(root).items()}
    return {name: paths for name, paths in people.items() if paths}
