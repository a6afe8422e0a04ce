"""The gallery commands end to end, and a kill -9 in the middle of `faceprint enroll-dir`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faceprint.cli import main
from faceprint.gallery import Gallery


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of `faceprint ARGS`."""
    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_enroll_dir_identify_people(tmp_path: Path, knn_dir: Path, capsys: pytest.CaptureFixture) -> None:
    gallery = ["--gallery", str(tmp_path / "g.sqlite3")]
    code, out, _ = run(["enroll-dir", str(knn_dir / "train"), *gallery], capsys)
    assert code == 0 and "enrolled" in out

    code, out, _ = run(
        [
            "identify",
            str(knn_dir / "test" / "obama_and_biden.jpg"),
            "--json",
            "--top-k",
            "2",
            "--draw",
            str(tmp_path / "drawn"),
            *gallery,
        ],
        capsys,
    )
    doc = json.loads(out)
    assert code == 0 and sorted(f["name"] for f in doc["faces"]) == ["biden", "obama"]
    assert all(len(f["candidates"]) == 2 and f["confidence"] > 0.5 for f in doc["faces"])
    assert (tmp_path / "drawn" / "obama_and_biden.jpg").is_file()

    code, out, _ = run(["people", "list", "--json", *gallery], capsys)
    assert {"obama", "biden"} <= {p["name"] for p in json.loads(out)}
    assert run(["people", "rename", "obama", "Barack Obama", *gallery], capsys)[0] == 0
    code, out, _ = run(["identify", str(knn_dir / "test" / "obama1.jpg"), *gallery], capsys)
    assert "Barack Obama" in out
    assert run(["people", "delete", "Barack Obama", "--yes", *gallery], capsys)[0] == 0
    code, out, _ = run(["identify", str(knn_dir / "test" / "obama1.jpg"), "--json", *gallery], capsys)
    assert [f["name"] for f in json.loads(out)["faces"]] == ["unknown"]


def test_enroll_refusal_exits_non_zero(tmp_path: Path, knn_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(
        ["enroll", "obama", str(knn_dir / "test" / "obama_and_biden.jpg"), "--gallery", str(tmp_path / "g")],
        capsys,
    )
    assert code == 1 and "2 faces found" in out


def test_foreign_gallery_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("shopping list\n")
    code, _, err = run(["people", "list", "--gallery", str(bad)], capsys)
    assert code == 1 and f"{bad}: not a gallery database" in err


@pytest.mark.slow
def test_kill_9_during_enroll_dir_then_rerun_completes(tmp_path: Path, lfw_dir: Path, analyzer) -> None:
    people = tmp_path / "people"
    names = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld"]
    for name in names:
        (people / name).mkdir(parents=True)
        for image in sorted((lfw_dir / name).iterdir())[:8]:
            (people / name / image.name).symlink_to(image)
    path = tmp_path / "g.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from faceprint.cli import main; main()",
            "enroll-dir",
            str(people),
            "--gallery",
            str(path),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists():
                with Gallery.open(path) as g:
                    if len(g) >= 3:
                        break
            time.sleep(0.2)
        assert proc.poll() is None, "enroll-dir finished before it could be interrupted"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Gallery.open(path) as g:
        assert g.store.integrity_check() == ["ok"]
        interrupted = len(g)
        assert 3 <= interrupted < 24
        report = g.enroll_dir(people, analyzer)
        assert len(report.skipped) == interrupted
        assert len(g) == len(report.enrolled) + interrupted == 24 - len(report.refused)
        hashes = [t.content_hash for t in g.templates()]
        assert len(hashes) == len(set(hashes))
