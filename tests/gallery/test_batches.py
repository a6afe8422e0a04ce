"""Batches report and continue: a bad or ambiguous image is skipped with its reason, the run goes on,
a summary says what was skipped, and the exit status is 1 unless --skip-errors (CLI in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceprint.gallery import Gallery

CLI = "import sys; from faceprint.cli import main; main(sys.argv[1:])"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=600, env=os.environ
    )


@pytest.fixture()
def people(tmp_path: Path, knn_dir: Path) -> Path:
    """obama: a portrait and a photo of two faces of similar size; biden: a portrait and a corrupt file."""
    root = tmp_path / "people"
    (root / "obama").mkdir(parents=True)
    (root / "biden").mkdir()
    (root / "obama" / "portrait.jpg").write_bytes((knn_dir / "train" / "obama" / "obama.jpg").read_bytes())
    (root / "obama" / "group.jpg").write_bytes((knn_dir / "test" / "obama_and_biden.jpg").read_bytes())
    (root / "biden" / "portrait.jpg").write_bytes((knn_dir / "train" / "biden" / "biden.jpg").read_bytes())
    (root / "biden" / "broken.jpg").write_bytes(
        (knn_dir / "train" / "biden" / "biden.jpg").read_bytes()[:900]
    )
    return root


@pytest.mark.slow
def test_enroll_dir_skips_with_reasons_and_takes_the_largest_face_on_request(
    people: Path, tmp_path: Path
) -> None:
    gallery = ["--gallery", str(tmp_path / "g.sqlite3")]
    proc = cli("enroll-dir", str(people), *gallery)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "2 enrolled, 0 already enrolled (skipped), 2 refused" in out
    assert "group.jpg" in out and "faces of similar size" in out and "--largest" in out
    assert "broken.jpg" in out and "corrupt image" in out
    assert "--face" not in out and "face_index" not in out  # enroll-dir has no such option
    assert "Traceback" not in proc.stderr

    # --largest: the group photo gives its largest face; the corrupt file is still reported, and
    # --skip-errors makes the run succeed.
    proc = cli("enroll-dir", str(people), "--largest", "--skip-errors", *gallery)
    assert proc.returncode == 0, proc.stderr
    assert "1 enrolled, 2 already enrolled (skipped), 1 refused" in proc.stdout
    assert "enrolled the largest of 3 faces" in proc.stdout and "broken.jpg" in proc.stdout
    with Gallery.open(tmp_path / "g.sqlite3", read_only=True) as g:
        assert {p.name: p.n_templates for p in g.people()} == {"obama": 2, "biden": 1}


@pytest.mark.slow
def test_embed_and_identify_skip_bad_images_and_go_on(
    people: Path, tmp_path: Path, enrolled: Path, default_dim: int
) -> None:
    inputs = [
        people / "obama" / "portrait.jpg",
        people / "biden" / "broken.jpg",
        people / "obama" / "group.jpg",
    ]
    inputs.append(people / "biden" / "portrait.jpg")
    out = tmp_path / "e.npy"
    proc = cli("embed", *map(str, inputs), "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    vectors = np.load(out)
    # One row per input, in order; skipped images are rows of NaN.
    assert vectors.shape == (4, default_dim)
    assert [bool(np.isnan(v).any()) for v in vectors] == [False, True, True, False]
    assert (
        "broken.jpg" in proc.stderr
        and "group.jpg" in proc.stderr
        and "2 of 4 image(s) skipped" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert cli("embed", *map(str, inputs), "--out", str(out), "--skip-errors").returncode == 0

    proc = cli("identify", *map(str, inputs), "--gallery", str(enrolled))
    assert proc.returncode == 1 and "broken.jpg" in proc.stderr and "1 of 4 image(s) skipped" in proc.stderr
    assert proc.stdout.count("face(s)") == 3  # the others were identified
    proc = cli("identify", *map(str, inputs), "--gallery", str(enrolled), "--skip-errors")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_evaluate_folder_leaves_a_corrupt_image_out(lfw_people) -> None:
    root = lfw_people({"Colin_Powell": 3, "Tony_Blair": 3, "George_W_Bush": 2})
    good = next((root / "Tony_Blair").iterdir()).resolve().read_bytes()
    (root / "Tony_Blair" / "Tony_Blair_9999.jpg").write_bytes(good[: len(good) // 3])
    args = ["evaluate", "folder", str(root), "--pairs", "12", "--folds", "2", "--quiet"]
    proc = cli(*args)
    assert proc.returncode == 1, proc.stderr
    assert "Tony_Blair_9999.jpg" in proc.stderr and "1 unreadable image(s) left out" in proc.stderr
    assert "accuracy" in proc.stdout.lower()  # the evaluation ran on the rest
    assert "Traceback" not in proc.stderr
    assert cli(*args, "--skip-errors").returncode == 0
