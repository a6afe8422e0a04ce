"""Protocols end to end through the real pipeline (MTCNN + dlib ResNet) on a small LFW subset:
20 people with 3-6 images and 10 people with one image (87 images, embedded once per module)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from faceprint.evaluation.cache import EmbeddingCache
from faceprint.evaluation.pairs import read_lfw_pairs
from faceprint.evaluation.protocols import (
    compare_pairs,
    evaluate_folder,
    evaluate_identification,
    evaluate_pairs,
)
from faceprint.evaluation.report import write_identification_report, write_verification_report
from faceprint.evaluation.runner import PipelineConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def subset(lfw_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("lfw30")
    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir())
    counts = {p: sum(1 for _ in p.glob("*.jpg")) for p in people}
    multi = [p for p in people if 3 <= counts[p] <= 6][:20]
    single = [p for p in people if counts[p] == 1][:10]
    for person in multi + single:
        (root / person.name).symlink_to(person, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return EmbeddingCache(tmp_path_factory.mktemp("cache") / "embeddings.sqlite")


@pytest.fixture(scope="module")
def verification_cache(tmp_path_factory):
    """The cache the ``verification`` run fills first, whatever order the tests run in (other tests
    embedding the same subset into ``cache`` would make it warm)."""
    return EmbeddingCache(tmp_path_factory.mktemp("verification-cache") / "embeddings.sqlite")


@pytest.fixture(scope="module")
def verification(subset, verification_cache):
    return evaluate_folder(subset, n_pairs=120, cache=verification_cache, progress=False)


def test_same_person_pairs_are_closer(verification):
    d, same = verification.distances, verification.pairs.same
    assert same.sum() == 60 and (~same).sum() == 60
    assert np.median(d[same]) < 0.5 < np.median(d[~same])
    m = verification.metrics
    assert m.roc.auc > 0.95
    assert m.folded is not None and m.folded.mean > 0.85
    # 60 different-person pairs support FAR 0.1 only.
    assert [p.target_far for p in m.tar_at_far] == [0.1]
    assert m.refused_far == (0.01, 0.001)
    assert verification.embeddings.found.all()


def test_warm_rerun_embeds_nothing(verification, subset, verification_cache):
    again = evaluate_folder(subset, n_pairs=120, cache=verification_cache, progress=False)
    assert verification.embeddings.embedded > 0
    assert again.embeddings.embedded == 0
    np.testing.assert_array_equal(again.distances, verification.distances)


def test_html_report_references_its_plots_and_thumbnails(verification, tmp_path):
    page = write_verification_report(verification, tmp_path / "report")
    text = page.read_text()
    sources = re.findall(r"src='([^']+)'", text)
    assert {"roc.png", "distances.png", "confusion.png"} <= set(sources)
    for src in sources:
        assert (page.parent / src).read_bytes()[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")
    fa, fr = verification.worst()
    assert len([s for s in sources if s.startswith("thumbs/")]) == 2 * (len(fa) + len(fr))
    data = json.loads((page.parent / "report.json").read_text())
    assert data["results"][0]["metrics"]["auc"] == pytest.approx(verification.metrics.roc.auc)


def test_flip_and_alignment_off_configs(verification, verification_cache):
    # The default embeds each face with its mirror image; flip=off takes one view.
    configs = [PipelineConfig(), PipelineConfig.parse("one:flip=off"), PipelineConfig.parse("crop:align=off")]
    plain, single, crop = compare_pairs(verification.pairs, configs, cache=verification_cache, progress=False)
    np.testing.assert_array_equal(plain.distances, verification.distances)
    cos_single = np.sum(plain.embeddings.vectors * single.embeddings.vectors, axis=1)
    cos_crop = np.sum(plain.embeddings.vectors * crop.embeddings.vectors, axis=1)
    # A mirrored face is nearly the same face; an unaligned crop is a visibly different input.
    assert cos_single.min() > 0.9 and cos_single.max() < 1 - 1e-6
    assert cos_crop.mean() < cos_single.mean()
    assert single.metrics.roc.auc > 0.95


def test_identification_open_set(subset, cache):
    result = evaluate_identification(subset, cache=cache, progress=False)
    m = result.metrics
    assert (m.n_gallery, m.n_unknown) == (20, 10)
    assert m.n_known == sum(len(list((subset / n).glob("*.jpg"))) - 1 for n, _ in result.split.gallery)
    assert m.rank1 > 0.85 and m.rank5 >= m.rank1
    assert [p.target_far for p in m.dir_at_far] == [0.1]
    assert m.dir_at_far[0].far <= 0.1 and m.dir_at_far[0].dir <= m.rank1
    page = write_identification_report(result, result_dir := subset.parent / "idreport")
    assert (result_dir / "cmc.png").is_file() and "cmc.png" in page.read_text()


def test_robustness_slices(lfw_protocol, lfw_dir, cache, tmp_path):
    pairs_file = _small_pairs_file(lfw_protocol, tmp_path / "pairs.txt")
    result = evaluate_pairs(
        read_lfw_pairs(pairs_file, lfw_dir), cache=cache, slices=True, slice_pairs=20, progress=False
    )
    by_name = {s.name: s for s in result.slices}
    clean = by_name["clean (sample)"]
    assert clean.pairs == 20
    assert clean.accuracy == pytest.approx(result.metrics.confusion.accuracy)
    corruptions = [s for s in result.slices if s.name != "clean (sample)" and not s.name.startswith("yaw")]
    assert len(corruptions) == 5 and all(s.pairs == 20 for s in corruptions)
    # Hiding the eyes or the mouth pushes same-person pairs apart.
    for name in ("occlusion: eye band", "occlusion: lower face"):
        assert by_name[name].same_distance > clean.same_distance + 0.02
    yaw = [s for s in result.slices if s.name.startswith("yaw")]
    assert sum(s.pairs for s in yaw) == 20


def _small_pairs_file(lfw_protocol, path):
    """The first 5 same and 5 different pairs of LFW's folds 1 and 2, as a 2-fold pairs file."""
    lines = (lfw_protocol / "pairs.txt").read_text().splitlines()
    chosen = lines[1:6] + lines[301:306] + lines[601:606] + lines[901:906]
    path.write_text("2 5\n" + "\n".join(chosen) + "\n")
    return path


def test_cli_pairs_with_report(lfw_protocol, lfw_dir, cache, tmp_path, capsys):
    from faceprint.cli import main

    pairs_file = _small_pairs_file(lfw_protocol, tmp_path / "pairs.txt")
    args = ["evaluate", "pairs", str(pairs_file), "--images", str(lfw_dir), "--quiet"]
    args += ["--cache-file", str(cache.path), "--report", str(tmp_path / "rep"), "--far", "0.1"]
    main(args)  # returns normally on success
    out = capsys.readouterr().out
    assert "2 folds x 10 pairs" in out and "TAR@FAR=0.1" in out
    assert (tmp_path / "rep" / "index.html").is_file() and (tmp_path / "rep" / "roc.png").is_file()


def test_cli_bad_pairs_file_is_one_line_error(lfw_dir, tmp_path, capsys):
    from faceprint.cli import main

    bad = tmp_path / "pairs.txt"
    bad.write_text("10 300\nAbel_Pacheco 1 4\n")
    with pytest.raises(SystemExit) as done:
        main(["evaluate", "pairs", str(bad), "--images", str(lfw_dir)])
    assert done.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pairs.txt: header promises 10 folds" in err and "\n" not in err
