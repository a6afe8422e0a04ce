"""No silent surprises: thresholds outside the range of distances, and enrolling with another embedder
version than the gallery's, are refused with one line (CLI in a subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faceprint.analyzer import FaceAnalyzer
from faceprint.errors import FaceprintError
from faceprint.gallery import Gallery
from faceprint.thresholds import checked_threshold
from faceprint.types import EmbedderKey

CLI = "import sys; from faceprint.cli import main; main(sys.argv[1:])"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=600, env=os.environ
    )


def default_key(**options: object) -> EmbedderKey:
    """The default embedder's version with these options (what a command without --embedder uses)."""
    return EmbedderKey.of(FaceAnalyzer(embedder_options=options).embedder)


def one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


@pytest.mark.parametrize("value", [0.0, -3.0, 2.0, 5.0, float("nan"), float("inf")])
def test_thresholds_outside_the_distance_range_are_refused(value: float) -> None:
    with pytest.raises(FaceprintError, match="between 0 and 2"):
        checked_threshold(value)
    assert checked_threshold(0.6) == 0.6


@pytest.mark.slow
def test_cli_refuses_threshold_5_and_minus_3(enrolled: Path, tmp_path: Path, knn_dir: Path) -> None:
    shutil.copy(enrolled, tmp_path / "g.sqlite3")
    gallery = ["--gallery", str(tmp_path / "g.sqlite3")]
    one_line_error(cli("threshold", "5", *gallery), "between 0 and 2")
    photo = str(knn_dir / "test" / "obama1.jpg")
    one_line_error(cli("identify", photo, "--threshold", "-3", *gallery), "between 0 and 2")
    one_line_error(cli("compare", photo, photo, "--threshold", "9"), "between 0 and 2")
    with Gallery.open(tmp_path / "g.sqlite3", read_only=True) as g:
        key = default_key()
        assert g.fixed_threshold(key) is None  # nothing was stored
    assert cli("threshold", "0.5", *gallery).returncode == 0  # where a valid one is
    with Gallery.open(tmp_path / "g.sqlite3", read_only=True) as g:
        assert g.fixed_threshold(key) == 0.5


@pytest.mark.slow
def test_enrolling_with_another_embedder_version_is_refused_and_identify_says_what_it_ignores(
    enrolled: Path, tmp_path: Path, knn_dir: Path
) -> None:
    shutil.copy(enrolled, tmp_path / "g.sqlite3")
    gallery = ["--gallery", str(tmp_path / "g.sqlite3")]
    photo = str(knn_dir / "train" / "obama" / "obama2.jpg")
    proc = cli("--no-flip", "enroll", "obama", photo, *gallery)
    assert proc.returncode == 1 and f"made with {default_key()}" in proc.stdout, proc.stdout + proc.stderr
    with Gallery.open(tmp_path / "g.sqlite3", read_only=True) as g:
        assert len(g.embedders()) == 1
    # reembed adds the one-view templates on purpose; identify with the default then says what it skips.
    assert cli("--no-flip", "reembed", *gallery).returncode == 0
    proc = cli("identify", str(knn_dir / "test" / "obama1.jpg"), *gallery)
    assert proc.returncode == 0 and "obama" in proc.stdout
    assert f"note: templates of {default_key(flip=False)} " in proc.stderr
