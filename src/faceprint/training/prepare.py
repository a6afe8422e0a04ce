"""``faceprint data prepare``: balance, split by identity, detect/align/crop, clean, write the manifest.

Every imported image gets one manifest row saying what happened to it and why. Detection and embedding
results are appended to ``records.jsonl`` as each image finishes, so an interrupted run resumes where it
stopped; balancing and splitting are pure functions of the seed and are simply recomputed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceprint import subject
from faceprint.alignment import chip_specs
from faceprint.errors import FaceprintError
from faceprint.io import load_image
from faceprint.quality import MIN_FACE_SIZE, MIN_SHARPNESS, face_size, sharpness
from faceprint.training.dataset import MANIFEST_FIELDS
from faceprint.training.sources import Imported, Sample

SPLITS = ("train", "val", "test")
# The embedder whose aligned chips data preparation cuts unless told otherwise: the training recipes'
# chip, and the scale the near-duplicate and outlier distances below were chosen on.
PREPARE_EMBEDDER = "dlib-resnet"
RECORD_OPTIONS = ("min_face", "min_sharpness", "ambiguity")  # what detection results depend on


@dataclass(frozen=True)
class PrepareConfig:
    identities: int = 0  # how many identities to pick (0: every eligible one)
    images: int = 0  # images per identity, at most (0: all)
    min_images: int = 0  # eligibility: identities with at least this many images (0: `images`, or 2)
    stratify: tuple[str, ...] = ()  # attributes to balance the picked identities over, e.g. ("Male",)
    split: tuple[float, ...] = (0.8, 0.1, 0.1)  # train/val/test fractions, or identity counts when >= 1
    seed: int = 0
    min_face: int = int(MIN_FACE_SIZE)  # smallest face side kept, pixels (also the smallest searched)
    min_sharpness: float = MIN_SHARPNESS  # faceprint.quality.sharpness of the chip (lower: blurred)
    ambiguity: float = 0.5  # a second face this large (area ratio to the largest) makes the image ambiguous
    near_duplicate: float = 0.08  # embedding distance under which two images of a person count as one
    # Distance to the centre of the identity's other images above which a label is suspect (how it was
    # chosen: docs/training.md).
    outlier: float = 0.45

    def eligible_min(self) -> int:
        return self.min_images or max(self.images, 2)


@dataclass(frozen=True)
class Record:
    """What preprocessing found for one image (one line of records.jsonl)."""

    source: str
    status: str  # "ok" or a drop reason
    faces: int = 0
    score: float = 0.0
    face_size: float = 0.0
    sharpness: float = 0.0
    chip: str = ""
    sha256: str = ""
    note: str = ""  # how a kept image was handled, when that needed a choice
    embedding: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class PrepareReport:
    out_dir: Path
    counts: dict[str, dict[str, int]]  # split -> reason -> images
    processed: int  # images detected in this run (0 when everything was already done)


def balance(
    samples: Sequence[Sample], config: PrepareConfig
) -> tuple[dict[str, list[Sample]], dict[str, str]]:
    """Pick identities (stratified by attributes when asked) and up to ``images`` images of each.

    Returns the chosen images per identity and, for every image left out, why."""
    rng = np.random.default_rng(config.seed)
    by_id: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_id[s.identity].append(s)
    skipped: dict[str, str] = {}
    eligible = []
    for name, group in sorted(by_id.items()):
        if len(group) >= config.eligible_min():
            eligible.append(name)
        else:
            for s in group:
                skipped[s.source] = f"identity has {len(group)} image(s), fewer than {config.eligible_min()}"
    chosen = _pick_identities(eligible, by_id, config, rng)
    picked: dict[str, list[Sample]] = {}
    for name in eligible:
        group = by_id[name]
        if name not in chosen:
            for s in group:
                skipped[s.source] = "identity not picked by balancing"
            continue
        order = rng.permutation(len(group))
        take = order if not config.images else order[: config.images]
        picked[name] = [group[i] for i in sorted(take)]
        for i in order[len(take) :]:
            skipped[group[i].source] = f"beyond {config.images} images per identity"
    return picked, skipped


def _pick_identities(
    eligible: list[str], by_id: dict[str, list[Sample]], config: PrepareConfig, rng: np.random.Generator
) -> set[str]:
    want = config.identities or len(eligible)
    if want > len(eligible):
        raise FaceprintError(
            f"asked for {want} identities but only {len(eligible)} have {config.eligible_min()}+ images"
        )
    if not config.stratify:
        return {eligible[i] for i in rng.permutation(len(eligible))[:want]}
    strata: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for name in eligible:
        strata[_stratum(by_id[name], config.stratify)].append(name)
    # Equal shares per stratum (the seed balanced gender); strata too small give their share to the others.
    pools = {k: [v[i] for i in rng.permutation(len(v))] for k, v in sorted(strata.items())}
    chosen: list[str] = []
    while len(chosen) < want:
        open_pools = [k for k in pools if pools[k]]
        share = max(1, (want - len(chosen)) // len(open_pools))
        for k in open_pools:
            take = pools[k][: min(share, want - len(chosen))]
            pools[k] = pools[k][len(take) :]
            chosen += take
    return set(chosen)


def _stratum(group: list[Sample], attributes: tuple[str, ...]) -> tuple[int, ...]:
    """An identity's attribute values: the majority over its images (a person wears glasses in some)."""
    values = []
    for attr in attributes:
        have = [s.attributes[attr] for s in group if attr in s.attributes]
        if not have:
            raise FaceprintError(f"attribute {attr!r} is not in the data set's attribute file")
        values.append(int(np.mean(have) >= 0.5))
    return tuple(values)


def split_identities(names: Sequence[str], split: Sequence[float], seed: int) -> dict[str, str]:
    """Assign every identity to one split; ``split`` holds fractions (summing to 1) or identity counts."""
    if len(split) not in (2, 3):
        raise FaceprintError(f"--split takes 2 or 3 values (train, val[, test]), got {list(split)}")
    names = sorted(names)
    order = [names[i] for i in np.random.default_rng([seed, 1]).permutation(len(names))]
    if all(v >= 1 for v in split):
        counts = [int(v) for v in split]
        if sum(counts) > len(names):
            raise FaceprintError(f"split counts {counts} exceed the {len(names)} identities available")
    else:
        if abs(sum(split) - 1) > 1e-6:
            raise FaceprintError(f"split fractions {list(split)} must sum to 1")
        bounds = np.round(np.cumsum(split) * len(names)).astype(int)
        counts = list(np.diff(np.concatenate([[0], bounds])))
    assignment, start = {}, 0
    for split_name, count in zip(SPLITS, counts, strict=False):
        for name in order[start : start + count]:
            assignment[name] = split_name
        start += count
    return assignment


def preprocess_batch(
    root: Path,
    samples: Sequence[Sample],
    analyzer: Any,
    out_dir: Path,
    config: PrepareConfig,
    protocol: frozenset[str] = frozenset(),
) -> list[Record]:
    """Detect (one detector batch), choose each image's face, check it, align and save its chip, and embed
    the chips (one embedder batch) for cleaning. Images in ``protocol`` (evaluation pairs) are dropped
    only when no face is found, so the protocol stays whole: of several faces the most central is the
    labelled person (as in LFW), and small or blurred faces are evaluated as they are."""
    images, records = [], []
    for s in samples:
        try:
            data = (root / s.source).read_bytes()
            images.append(load_image(data))
            records.append(Record(s.source, "ok", sha256=hashlib.sha256(data).hexdigest()))
        except (OSError, FaceprintError) as err:
            images.append(None)
            records.append(Record(s.source, f"unreadable: {err}"))
    readable = [i for i, im in enumerate(images) if im is not None]
    found = analyzer.detector.detect_batch([images[i] for i in readable]) if readable else []
    chips: dict[int, np.ndarray] = {}
    for i, detections in zip(readable, found, strict=True):
        lenient = samples[i].source in protocol
        records[i], chip = _check_face(records[i], images[i], detections, analyzer, config, lenient)
        if chip is not None:
            chips[i] = chip
    if chips:
        vectors = analyzer.embed_chips(np.stack(list(chips.values())))
        for (i, chip), vector in zip(chips.items(), vectors, strict=True):
            sample = samples[i]
            rel = f"chips/{_safe(sample.identity)}/{_safe(Path(sample.source).stem)}.png"
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out_dir / rel), cv2.cvtColor(chip, cv2.COLOR_RGB2BGR))  # PNG: lossless chips
            records[i] = _replace(records[i], chip=rel, embedding=[round(float(v), 6) for v in vector])
    return records


def _check_face(
    record: Record,
    image: np.ndarray,
    detections: Sequence[Any],
    analyzer: Any,
    config: PrepareConfig,
    lenient: bool,
) -> tuple[Record, np.ndarray | None]:
    """The image's face (the largest) and its aligned chip, or the reason the image is dropped."""
    if not detections:
        return _replace(record, status="no face"), None
    face = subject.largest(detections)
    rivals = subject.rivals(detections, config.ambiguity)
    if len(rivals) > 1 and not lenient:
        return _replace(record, status="several faces of similar size", faces=len(detections)), None
    if len(rivals) > 1:
        face = subject.most_central(rivals, image.shape)
        record = _replace(record, note=f"kept the most central of {len(rivals)} faces of similar size")
    record = _replace(record, faces=len(detections), score=float(face.score), face_size=face_size(face.box))
    if record.face_size < config.min_face and not lenient:
        return _replace(record, status=f"face smaller than {config.min_face}px"), None
    chip = analyzer.align(image, [face])[0]
    record = _replace(record, sharpness=sharpness(chip))
    if record.sharpness < config.min_sharpness and not lenient:
        return _replace(record, status="blurred"), None
    return record, chip


def _replace(record: Record, **changes: Any) -> Record:
    return Record(**{**asdict(record), **changes})


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def clean(records: dict[str, Record], identity: dict[str, str], config: PrepareConfig) -> dict[str, str]:
    """Drop reasons for kept images: exact duplicates (same file bytes), near duplicates (embeddings
    closer than ``near_duplicate`` within an identity) and label-noise outliers (farther than ``outlier``
    from the centre of the identity's other images)."""
    dropped: dict[str, str] = {}
    first_of: dict[str, str] = {}
    for source in sorted(records):
        rec = records[source]
        if rec.sha256 in first_of:
            dropped[source] = f"exact duplicate of {first_of[rec.sha256]}"
        else:
            first_of[rec.sha256] = source
    groups: dict[str, list[str]] = defaultdict(list)
    for source in sorted(records):
        if source not in dropped:
            groups[identity[source]].append(source)
    for sources in groups.values():
        emb = np.array([records[s].embedding for s in sources], np.float32)
        alive = list(range(len(sources)))
        for i in range(len(sources)):
            if i not in alive:
                continue
            for j in range(i + 1, len(sources)):
                if j in alive and np.linalg.norm(emb[i] - emb[j]) < config.near_duplicate:
                    dropped[sources[j]] = f"near duplicate of {sources[i]}"
                    alive.remove(j)
        if len(alive) < 3:
            continue  # with two images neither can be told to be the odd one out
        total = emb[alive].sum(axis=0)
        for i in alive:
            centre = (total - emb[i]) / (len(alive) - 1)  # leave-one-out: an outlier cannot pull its centre
            centre /= np.linalg.norm(centre)
            distance = float(np.linalg.norm(emb[i] - centre))
            if distance > config.outlier:
                dropped[sources[i]] = f"label outlier: {distance:.2f} from its identity's centre"
    return dropped


@dataclass(frozen=True)
class Plan:
    """Which images a run works on and where each goes: a pure function of the import and the config."""

    split_of: dict[str, str]  # source -> split, for every image to detect
    skipped: dict[str, str]  # source -> why balancing or splitting left it out
    protocol: frozenset[str]  # sources in the evaluation pairs (kept whole, evaluated, never trained on)


def prepare(
    data: Imported,
    out_dir: Path,
    analyzer: Any,
    config: PrepareConfig,
    *,
    workers: int = 1,
    batch_size: int = 16,
    progress: Callable[[int, int], Any] | None = None,
) -> PrepareReport:
    """Run the whole preparation into ``out_dir`` (resumable) and write dataset.json, manifest.csv,
    pairs.csv (when the import has pairs) and report.json. ``progress(done, total)`` follows detection."""
    specs = chip_specs(analyzer.embedder)
    if len(specs) != 1:
        raise FaceprintError(
            f"{analyzer.embedder.name}: data preparation cuts one aligned chip per face to train on; this "
            f"embedder takes {len(specs)} side by side: prepare with --embedder {PREPARE_EMBEDDER} or facenet"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = _settings(data, analyzer, config)
    _check_settings(out_dir / "dataset.json", settings)
    plan = plan_images(data, config)
    records, processed = _detect(data, plan, out_dir, analyzer, config, workers, batch_size, progress)
    dropped = _clean_splits(data, plan, records, config)
    report = _write(data, plan, records, dropped, out_dir, settings)
    return PrepareReport(out_dir, report, processed)


def _settings(data: Imported, analyzer: Any, config: PrepareConfig) -> dict[str, Any]:
    """What the run's results depend on, saved in dataset.json (see :func:`_check_settings`)."""
    return {
        "root": str(data.root.resolve()),
        "layout": data.layout,
        "config": json.loads(json.dumps(asdict(config))),
        "chip_size": int(analyzer.embedder.input_size),
        "template": np.asarray(analyzer.embedder.template(), np.float32).tolist(),
        "detector": type(analyzer.detector).__name__,
        "embedder": f"{analyzer.embedder.name} {analyzer.embedder.version}",
    }


def plan_images(data: Imported, config: PrepareConfig) -> Plan:
    """Balance and split the training images by identity; the pairs' images all go to test. Refuses an
    identity that is both in the pairs and in training."""
    pair_sources = {data.source(path) for p in data.pairs for path in (p.a, p.b)}
    by_source = {s.source: s for s in data.samples}
    train_like = [s for s in data.samples if s.source not in pair_sources]
    picked, skipped = balance(train_like, config) if train_like else ({}, {})
    split_of_id = split_identities(list(picked), config.split, config.seed) if picked else {}
    split_of: dict[str, str] = {}
    for name, group in picked.items():
        for s in group:
            if name in split_of_id:
                split_of[s.source] = split_of_id[name]
            else:
                skipped[s.source] = "identity left over by the split counts"
    for source in pair_sources:
        split_of[source] = "test"  # protocol pairs are evaluated, never trained on
    leaked = {by_source[s].identity for s in pair_sources} & set(split_of_id)
    if leaked:
        raise FaceprintError(
            f"{len(leaked)} identities are both in the pairs and in training (e.g. {sorted(leaked)[0]}); "
            "use a people file disjoint from the pairs"
        )
    return Plan(split_of, skipped, frozenset(pair_sources))


def _detect(
    data: Imported,
    plan: Plan,
    out_dir: Path,
    analyzer: Any,
    config: PrepareConfig,
    workers: int,
    batch_size: int,
    progress: Callable[[int, int], Any] | None,
) -> tuple[dict[str, Record], int]:
    """Every planned image's record: those of earlier runs from records.jsonl, the rest detected now in
    batches and appended to it as each finishes. Returns the records and how many images were detected."""
    records = _read_records(out_dir / "records.jsonl")
    by_source = {s.source: s for s in data.samples}
    todo = [by_source[s] for s in sorted(plan.split_of) if s not in records]
    chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]

    def run(chunk: list[Sample]) -> list[Record]:
        return preprocess_batch(data.root, chunk, analyzer, out_dir, config, plan.protocol)

    with open(out_dir / "records.jsonl", "a") as log, ThreadPoolExecutor(max(1, workers)) as pool:
        for done in pool.map(run, chunks):
            for rec in done:
                records[rec.source] = rec
                log.write(json.dumps(asdict(rec)) + "\n")
            log.flush()
            if progress is not None:
                progress(len(done), len(todo))
    return records, len(todo)


def _clean_splits(
    data: Imported, plan: Plan, records: dict[str, Record], config: PrepareConfig
) -> dict[str, str]:
    """Drop reasons from :func:`clean` for the images kept so far, split by split (so a duplicate in
    another split can never make a training image vanish silently); the pairs' test images stay whole."""
    ok = {s: records[s] for s in plan.split_of if records[s].status == "ok"}
    identity = {s.source: s.identity for s in data.samples if s.source in ok}
    dropped: dict[str, str] = {}
    for split in SPLITS:
        part = {s: r for s, r in ok.items() if plan.split_of[s] == split}
        dropped.update(clean(part, identity, config) if split != "test" or not data.pairs else {})
    return dropped


def _write(
    data: Imported,
    plan: Plan,
    records: dict[str, Record],
    dropped: dict[str, str],
    out_dir: Path,
    settings: dict[str, Any],
) -> dict[str, dict[str, int]]:
    """Write manifest.csv (a row per imported image: kept, dropped or unselected, and why), pairs.csv,
    report.json and dataset.json; returns the counts per split and reason."""
    rows = []
    for s in data.samples:
        rec = records.get(s.source)
        if s.source in plan.skipped:
            status, reason = "unselected", plan.skipped[s.source]
        elif rec is None:
            continue
        elif rec.status != "ok":
            status, reason = "dropped", rec.status
        elif s.source in dropped:
            status, reason = "dropped", dropped[s.source]
        else:
            status, reason = "kept", rec.note
        rows.append(_manifest_row(s, plan.split_of.get(s.source, ""), status, reason, rec))
    _write_csv(out_dir / "manifest.csv", MANIFEST_FIELDS, rows)
    if data.pairs:
        _write_csv(
            out_dir / "pairs.csv",
            ("first", "second", "same", "fold"),
            [
                {"first": data.source(p.a), "second": data.source(p.b), "same": int(p.same), "fold": p.fold}
                for p in data.pairs
            ],
        )
    counts: dict[str, dict[str, int]] = defaultdict(Counter)
    for row in rows:
        key = row["status"] if row["status"] != "dropped" else f"dropped: {_reason_kind(row['reason'])}"
        counts[row["split"] or "-"][key] += 1
    report = {k: dict(v) for k, v in sorted(counts.items())}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "dataset.json").write_text(json.dumps({**settings, "counts": report}, indent=2) + "\n")
    return report


def _reason_kind(reason: str) -> str:
    """The reason without its per-image detail ('near duplicate of X' -> 'near duplicate')."""
    return re.split(r" of |:", reason)[0]


def _manifest_row(s: Sample, split: str, status: str, reason: str, rec: Record | None) -> dict[str, Any]:
    return {
        "source": s.source,
        "identity": s.identity,
        "split": split,
        "status": status,
        "reason": reason,
        "chip": rec.chip if rec and status == "kept" else "",
        "faces": rec.faces if rec else "",
        "score": f"{rec.score:.4f}" if rec else "",
        "face_size": f"{rec.face_size:.1f}" if rec else "",
        "sharpness": f"{rec.sharpness:.1f}" if rec else "",
        "attributes": json.dumps(s.attributes) if s.attributes else "",
    }


def _write_csv(path: Path, fields: Sequence[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


def _read_records(path: Path) -> dict[str, Record]:
    records: dict[str, Record] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = Record(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue  # a line cut short by an interruption: that image is simply done again
            records[rec.source] = rec
    return records


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Refuse to mix detection results of other settings into a folder being resumed (balancing,
    splitting and cleaning are recomputed on every run, so their options may change)."""
    if not path.is_file():
        path.write_text(json.dumps(settings, indent=2) + "\n")
        return
    saved = json.loads(path.read_text())
    keys = [
        k for k in ("root", "chip_size", "template", "detector", "embedder") if saved.get(k) != settings[k]
    ]
    keys += [f"config.{k}" for k in RECORD_OPTIONS if saved["config"].get(k) != settings["config"][k]]
    if keys:
        raise FaceprintError(
            f"{path.parent}: was prepared with other settings ({', '.join(keys)}); "
            "use the same options or another output folder"
        )
