"""`faceprint data prepare` on a CelebA-format folder the test builds from LFW images, with planted
problems (an exact duplicate, a re-encoded near duplicate, a mislabelled face, an image without a face)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceprint.errors import FaceprintError
from faceprint.training.prepare import PREPARE_EMBEDDER, PrepareConfig, balance, prepare, split_identities
from faceprint.training.sources import Sample, import_dataset


def celeba_fixture(lfw_dir: Path, root: Path) -> dict[str, str]:
    """Five LFW people x 5 images as CelebA identities 1-5 plus planted problems: file -> expected reason."""
    people = [p for p in sorted(lfw_dir.iterdir()) if len(list(p.glob("*.jpg"))) >= 5][:6]
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    ids, attrs = [], []
    n = 0

    def add(src: Path | None, identity: int, male: int, data: np.ndarray | None = None) -> str:
        nonlocal n
        n += 1
        name = f"{n:06d}.jpg"
        if src is not None:
            shutil.copyfile(src, images / name)
        else:
            cv2.imwrite(str(images / name), data)
        ids.append(f"{name} {identity}")
        attrs.append(f"{name} {'1' if male else '-1'} {'1' if n % 7 == 0 else '-1'}")
        return name

    for identity, person in enumerate(people[:5], 1):
        for img in sorted(person.glob("*.jpg"))[:5]:
            add(img, identity, identity % 2)
    first = images / "000001.jpg"
    planted = {
        add(first, 1, 1): "exact duplicate",
        add(
            None,
            1,
            1,
            cv2.imdecode(cv2.imencode(".jpg", cv2.imread(str(first)), [cv2.IMWRITE_JPEG_QUALITY, 80])[1], 1),
        ): "near duplicate",
        add(sorted(people[5].glob("*.jpg"))[0], 2, 0): "label outlier",
        add(None, 3, 1, np.full((250, 250, 3), 128, np.uint8)): "no face",
        add(None, 4, 0, cv2.GaussianBlur(cv2.imread(str(images / "000016.jpg")), (0, 0), 4)): "blurred",
    }
    (root / "identity_CelebA.txt").write_text("\n".join(ids) + "\n")
    (root / "list_attr_celeba.txt").write_text(f"{n}\nMale Eyeglasses\n" + "\n".join(attrs) + "\n")
    return {f"img_align_celeba/{k}": v for k, v in planted.items()}


@pytest.mark.slow
def test_prepare_celeba_folder(lfw_dir: Path, tmp_path: Path) -> None:
    from faceprint.analyzer import FaceAnalyzer

    planted = celeba_fixture(lfw_dir, tmp_path / "celeba")
    data = import_dataset(tmp_path / "celeba")
    assert data.layout == "celeba" and len(data.samples) == 30
    assert {s.attributes["Male"] for s in data.samples} == {0, 1}
    out = tmp_path / "prepared"
    config = PrepareConfig(split=(2, 2, 1), seed=3, min_sharpness=8)  # LFW has some soft photos
    # Chips to train on are one network's: the fusion embedder's side-by-side chips are refused.
    with pytest.raises(FaceprintError, match="fusion: data preparation cuts one aligned chip per face"):
        prepare(data, tmp_path / "fused", FaceAnalyzer(embedder="fusion"), config)
    assert not (tmp_path / "fused").exists()
    analyzer = FaceAnalyzer(embedder=PREPARE_EMBEDDER)
    report = prepare(data, out, analyzer, config, workers=2)
    assert report.processed == 30

    with open(out / "manifest.csv", newline="") as f:
        rows = {r["source"]: r for r in csv.DictReader(f)}
    assert set(rows) == {s.source for s in data.samples}  # every image has its decision
    for source, reason in planted.items():
        assert rows[source]["status"] == "dropped" and rows[source]["reason"].startswith(reason), rows[source]
    kept = [r for r in rows.values() if r["status"] == "kept"]
    assert len(kept) == 25, [(r["source"], r["reason"]) for r in rows.values() if r["status"] != "kept"]
    splits_of = {}
    for r in rows.values():
        splits_of.setdefault(r["identity"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())  # nobody is in two splits
    assert sorted(next(iter(s)) for s in splits_of.values()) == ["test", "train", "train", "val", "val"]
    chip = cv2.imread(str(out / kept[0]["chip"]))
    assert chip.shape == (analyzer.embedder.input_size, analyzer.embedder.input_size, 3)
    counts = json.loads((out / "report.json").read_text())
    assert sum(v for split in counts.values() for v in split.values()) == 30

    # Resuming finds everything done and writes the same manifest.
    manifest = (out / "manifest.csv").read_text()
    assert prepare(data, out, analyzer, config).processed == 0
    assert (out / "manifest.csv").read_text() == manifest

    # The prepared folder trains through the CLI, and the model exports.
    run = tmp_path / "run"
    tiny = ["--input-size", "32", "--width", "4", "--epochs", "1", "--p", "2", "--k", "2"]
    cli(["train", str(out), "--out", str(run), *tiny, "--val-pairs", "20"])
    cli(["export", str(run / "best.fpm"), "--onnx", str(tmp_path / "m.onnx")])
    assert (tmp_path / "m.onnx").stat().st_size > 0
    embedder = FaceAnalyzer(embedder=str(run / "best.fpm")).embedder
    assert embedder.input_size == analyzer.embedder.input_size  # it takes the chips prepare aligned
    np.testing.assert_array_equal(embedder.template(), analyzer.embedder.template())


def cli(args: list[str]) -> None:
    from faceprint.cli import main

    main(args)  # a failure exits with status 1 (SystemExit), failing the test


def samples(count: int, per: int, male_every: int = 2) -> list[Sample]:
    return [
        Sample(f"{i}/{j}.jpg", f"id{i}", {"Male": int(i % male_every == 0)})
        for i in range(count)
        for j in range(per)
    ]


def test_balance_stratifies_and_caps_images() -> None:
    # 30 identities, one in three male: a balanced pick of 10 has 5 of each.
    data = samples(30, 6, male_every=3) + samples(1, 1)  # plus one identity too small to pick
    picked, skipped = balance(data, PrepareConfig(identities=10, images=4, stratify=("Male",), seed=1))
    assert len(picked) == 10 and all(len(g) == 4 for g in picked.values())
    assert sum(g[0].attributes["Male"] for g in picked.values()) == 5
    assert len(skipped) == 20 * 6 + 10 * 2 + 1
    assert balance(data, PrepareConfig(identities=10, images=4, stratify=("Male",), seed=1))[0] == picked


def test_split_is_by_identity_seeded_and_exhaustive() -> None:
    names = [f"id{i}" for i in range(50)]
    a = split_identities(names, (0.8, 0.1, 0.1), seed=0)
    assert a == split_identities(names, (0.8, 0.1, 0.1), seed=0)
    assert a != split_identities(names, (0.8, 0.1, 0.1), seed=1)
    assert sorted(a) == sorted(names)
    assert [list(a.values()).count(s) for s in ("train", "val", "test")] == [40, 5, 5]
    b = split_identities(names, (10, 3), seed=0)
    assert len(b) == 13 and list(b.values()).count("val") == 3


def test_lfw_pairs_images_become_test_samples(lfw_dir: Path, lfw_protocol: Path) -> None:
    data = import_dataset(lfw_dir, "lfw", pairs=lfw_protocol / "pairsDevTest.txt")
    assert len(data.pairs) == 1000 and sum(p.same for p in data.pairs) == 500
    identity = {s.source: s.identity for s in data.samples}
    for pair in data.pairs:
        for path in (pair.a, pair.b):
            assert identity[data.source(path)] == path.parent.name
    assert all(p.a.parent == p.b.parent for p in data.pairs if p.same)
