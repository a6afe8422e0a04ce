"""Open-set identification on LFW deep-funneled: faceprint's gallery against face_recognition's way.

Protocol (``faceprint.evaluation.identification.open_set_split``): the gallery holds the first image of
every person with 2+ images; known probes are their other images; unknown probes are every image of the
people with exactly one image.

- faceprint: the default pipeline (MTCNN -> 5-point alignment -> dlib-resnet, through the evaluation
  cache), templates enrolled in a real SQLite ``Gallery``, probes searched in it, decided at the
  calibrated default threshold (what ``Recognizer.match_faces`` does).
- face_recognition's way (bench/dlib_anchor.py): dlib HOG + 5-point shapes + dlib descriptors,
  ``compare_faces`` tolerance 0.6 on raw descriptors, nearest match.

Both: an image in which the detector finds no face gives no template (its person's probes can only be
missed) and no probe embedding (a known probe is missed, an unknown one is rejected). Metrics: rank-1
identification rate (closed set, known probes), DIR at FAR = 1% and 0.1% (threshold set on the unknown
probes), and at each method's default threshold: unknown probes accepted as someone, and DIR.

A second table chooses how a person's several templates are combined (nearest template vs mean
embedding): people with 4+ images, the first 3 enrolled, the rest as known probes, the single-image
people as unknown probes.

    python bench/bench_identify_lfw.py [--every N]   # first run embeds LFW twice (cached afterwards)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(os.environ.get("FACEPRINT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
NO_FACE = 1e9  # score of a probe without a face: rejected at any threshold a FAR target can choose


@dataclass(frozen=True)
class Scores:
    """Nearest-identity distance of each probe, and whether the nearest identity is the right one."""

    known: np.ndarray
    known_correct: np.ndarray
    unknown: np.ndarray


def dir_at_far(s: Scores, far: float) -> str:
    """DIR (threshold) at an unknown-probe FAR target, from the shared evaluation metrics; "n/a" when
    there are too few unknown probes to measure that FAR."""
    from faceprint.evaluation.metrics import threshold_at_far

    if s.unknown.size * far < 1:
        return f"n/a (<{1 / far:.0f} unknowns)"

    d = np.r_[s.known[s.known_correct], s.unknown]
    same = np.r_[np.ones(int(s.known_correct.sum()), bool), np.zeros(s.unknown.size, bool)]
    point = threshold_at_far(d, same, far)
    return f"{point.tar * float(s.known_correct.mean()):6.2%} ({point.threshold:.3f})"


def at_threshold(s: Scores, threshold: float) -> tuple[int, float]:
    """(unknown probes accepted, DIR) at a fixed threshold."""
    accepted = int((s.unknown <= threshold).sum())
    return accepted, float(np.mean(s.known_correct & (s.known <= threshold)))


def faceprint_scores(
    vectors: dict[Path, np.ndarray],
    gallery: list[tuple[str, Path]],
    known: list[tuple[str, Path]],
    unknown: list[tuple[str, Path]],
    combine: str,
    version: str,
) -> tuple[Scores, float]:
    """Enrol into a temporary SQLite gallery and search it as the Recognizer does (nearest person), at
    the built-in threshold of that embedder ``version``."""
    from faceprint.gallery import EmbedderKey, Gallery

    key = EmbedderKey("dlib-resnet", version)
    with tempfile.TemporaryDirectory() as tmp, Gallery.open(Path(tmp) / "g.sqlite3", combine=combine) as g:
        with g.store.transaction():
            for name, path in gallery:
                if path in vectors:
                    person = g.find(name)
                    pid = person.id if person else g.add_person(name)
                    g.add_template(pid, vectors[path], embedder=key.name, embedder_version=key.version)

        def score(probes: list[tuple[str, Path]]) -> tuple[np.ndarray, np.ndarray]:
            have = [i for i, (_, p) in enumerate(probes) if p in vectors]
            found = g.search(np.stack([vectors[probes[i][1]] for i in have]), key)
            dist = np.full(len(probes), NO_FACE)
            correct = np.zeros(len(probes), bool)
            for i, (best,) in zip(have, found, strict=True):
                dist[i] = best.distance
                correct[i] = best.name == probes[i][0]
            return dist, correct

        known_d, known_ok = score(known)
        unknown_d, _ = score(unknown)
        threshold = g.calibration(key).threshold
    return Scores(known_d, known_ok, unknown_d), threshold


def fr_scores(
    enc: dict[Path, np.ndarray],
    gallery: list[tuple[str, Path]],
    known: list[tuple[str, Path]],
    unknown: list[tuple[str, Path]],
) -> Scores:
    """face_recognition's nearest match: Euclidean distance on raw descriptors (face_distance)."""
    from sklearn.metrics import pairwise_distances

    names = [n for n, p in gallery if p in enc]
    g = np.stack([enc[p] for n, p in gallery if p in enc])

    def score(probes):
        have = [i for i, (_, p) in enumerate(probes) if p in enc]
        d = pairwise_distances(np.stack([enc[probes[i][1]] for i in have]), g)
        best = d.argmin(axis=1)
        dist = np.full(len(probes), NO_FACE)
        correct = np.zeros(len(probes), bool)
        dist[have] = d[np.arange(len(have)), best]
        correct[have] = [names[b] == probes[i][0] for i, b in zip(have, best, strict=True)]
        return dist, correct

    known_d, known_ok = score(known)
    return Scores(known_d, known_ok, score(unknown)[0])


def row(label: str, s: Scores, threshold: float, n_faces: int, n_images: int) -> str:
    accepted, dir_default = at_threshold(s, threshold)
    return (
        f"{label:<34} | {n_faces:>5}/{n_images} | {np.mean(s.known_correct):6.2%} | "
        f"{dir_at_far(s, 1e-2):>16} | {dir_at_far(s, 1e-3):>18} | {threshold:5.3f} | "
        f"{accepted:>4} ({accepted / s.unknown.size:6.2%}) | {dir_default:6.2%}"
    )


def combine_split(people: dict[str, list[Path]]):
    gallery, known, unknown = [], [], []
    for name, images in people.items():
        if len(images) >= 4:
            gallery += [(name, p) for p in images[:3]]
            known += [(name, p) for p in images[3:]]
        elif len(images) == 1:
            unknown.append((name, images[0]))
    return gallery, known, unknown


def main() -> None:
    from dlib_anchor import TOLERANCE, encode_images
    from provenance import pipeline_cache

    from faceprint.evaluation.identification import open_set_split
    from faceprint.evaluation.pairs import labelled_images
    from faceprint.evaluation.runner import EmbeddingRunner

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--every", type=int, default=1, help="keep every N-th person (sorted by name)")
    args = parser.parse_args()

    root = DATA / "lfw" / "lfw-deepfunneled"
    people = labelled_images(root)
    keep = set(list(people)[:: args.every])
    full = open_set_split(root)
    split = [[(n, p) for n, p in part if n in keep] for part in (full.gallery, full.known, full.unknown)]
    gallery, known, unknown = split
    paths = sorted(p for n in keep for p in people[n])
    print(
        f"LFW open-set split, every {args.every} person(s): {len(gallery)} gallery identities, "
        f"{len(known)} known probes, {len(unknown)} unknown probes",
        flush=True,
    )

    runner = EmbeddingRunner(cache=pipeline_cache())
    version = runner.analyzer.embedder.version
    run = runner.embed_paths(paths)
    fp = {p: v for p, v, ok in zip(paths, run.vectors, run.found, strict=True) if ok}
    anchor = encode_images(paths)
    raw, found = anchor.embeddings, anchor.found
    fr = {p: v for p, v, ok in zip(paths, raw, found, strict=True) if ok}

    fp_s, fp_t = faceprint_scores(fp, gallery, known, unknown, "mean", version)
    fr_s = fr_scores(fr, gallery, known, unknown)

    header = (
        f"{'method':<34} | {'faces found':>11} | {'rank-1':>6} | {'DIR@FAR=1% (thr)':>16} | "
        f"{'DIR@FAR=0.1% (thr)':>18} | {'thr':>5} | {'unknown accepted':>16} | {'DIR@thr':>7}"
    )
    print(header)
    print("-" * len(header))
    print(row(f"faceprint (MTCNN + dlib-resnet {version})", fp_s, fp_t, len(fp), len(paths)))
    print(row("face_recognition (HOG, tol 0.6)", fr_s, TOLERANCE, len(fr), len(paths)))

    g3, k3, u3 = combine_split({n: people[n] for n in people if n in keep})
    print(
        f"\nCombining templates: {len(g3)} templates of {len({n for n, _ in g3})} people (3 each), "
        f"{len(k3)} known probes, {len(u3)} unknown probes"
    )
    print(header)
    print("-" * len(header))
    for combine in ("nearest", "mean"):
        s, t = faceprint_scores(fp, g3, k3, u3, combine, version)
        print(row(f"faceprint, combine={combine}", s, t, len(fp), len(paths)))


if __name__ == "__main__":
    main()
