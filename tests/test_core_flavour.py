"""The core install (no extras) detects, enrols and identifies: run in a fresh interpreter where the
packages of the `eval`/`train` extras and the dev-only oracles cannot be imported, as on a machine that
installed `requirements/core.txt` alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The eval/train extras and the test oracles: none of them is in requirements/core.txt.
NOT_IN_CORE = ("sklearn", "matplotlib", "tensorflow", "keras", "dlib", "skimage", "faceie")

RUNNER = f"""
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_IN_CORE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from faceprint.cli import main
main(sys.argv[1:])
"""


def _faceprint(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_core_detects_enrols_and_identifies_without_the_extras(faces_dir: Path, tmp_path: Path) -> None:
    knn = faces_dir / "face_recognition" / "examples" / "knn_examples"
    gallery = str(tmp_path / "core.sqlite3")
    probe = str(knn / "test" / "alex_lacamoire1.jpg")
    enrolled = _faceprint("enroll-dir", str(knn / "train"), "--gallery", gallery)
    assert enrolled.returncode == 0, enrolled.stderr
    named = _faceprint("identify", probe, "--gallery", gallery, "--json")
    assert named.returncode == 0, named.stderr
    assert "alex_lacamoire" in named.stdout
    found = _faceprint("detect", probe)
    assert found.returncode == 0 and "1 face(s)" in found.stdout, found.stderr


def test_a_command_that_needs_an_extra_says_which(tmp_path: Path, lfw_dir: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t1\nAaron_Peirsol\t1\t2\nAaron_Peirsol\t1\tAbdullah_Gul\t1\n")
    proc = _faceprint("evaluate", "pairs", str(pairs), "--images", str(lfw_dir))
    assert proc.returncode != 0
    if "Traceback" in proc.stderr:
        pytest.fail(f"a missing extra gave a traceback:\n{proc.stderr[-2000:]}")
    assert "faceprint[eval]" in proc.stderr
