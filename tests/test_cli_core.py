"""The core CLI commands on real photos, and their error handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceprint.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def examples(faces_dir: Path) -> Path:
    return faces_dir / "face_recognition" / "examples"


def test_detect_json_lists_each_face(examples: Path, capsys, tmp_path: Path) -> None:
    code, out, _ = run(
        [
            "detect",
            str(examples / "two_people.jpg"),
            str(examples / "obama.jpg"),
            "--json",
            "--draw",
            str(tmp_path / "drawn"),
        ],
        capsys,
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    # two_people.jpg holds two people; obama.jpg one portrait (the dark object behind it, which the
    # mtcnn package's cascade calls a face, is dropped by the phantom filter).
    assert len(lines[0]["faces"]) == 2
    assert len(lines[1]["faces"]) == 1 and lines[1]["faces"][0]["score"] > 0.99
    face = lines[1]["faces"][0]
    x1, y1, x2, y2 = face["box"]
    assert 300 < x1 < x2 < 700 and 0 < y1 < y2 < 500
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and face["score"] > 0.9
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["obama.jpg", "two_people.jpg"]


def test_detect_reports_bad_file_and_goes_on(examples: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    code, out, err = run(["detect", str(broken), str(examples / "obama.jpg")], capsys)
    assert code == 1
    assert "broken.jpg" in err and "Traceback" not in err
    assert "obama.jpg: " in out and "face(s)" in out


def test_embed_writes_matrix(examples: Path, tmp_path: Path, capsys, default_dim: int) -> None:
    out_file = tmp_path / "e.npy"
    code, _, _ = run(
        ["embed", str(examples / "obama.jpg"), str(examples / "biden.jpg"), "--out", str(out_file)], capsys
    )
    assert code == 0
    vectors = np.load(out_file)
    assert vectors.shape == (2, default_dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)  # float32 normalisation: ~1e-7


def test_embed_refuses_group_photo(examples: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(["embed", str(examples / "two_people.jpg"), "--out", str(tmp_path / "x.npy")], capsys)
    assert code == 1 and "two_people.jpg: 2 faces of similar size" in err
    assert not (tmp_path / "x.npy").exists()


def test_compare_same_and_different(examples: Path, capsys) -> None:
    code, out, _ = run(["compare", str(examples / "obama.jpg"), str(examples / "obama2.jpg")], capsys)
    assert code == 0 and "same person" in out
    code, out, _ = run(["compare", str(examples / "obama.jpg"), str(examples / "biden.jpg")], capsys)
    assert code == 0 and "different people" in out


def test_compare_without_face_is_a_clear_error(tmp_path: Path, capsys, examples: Path) -> None:
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (200, 200), "white").save(blank)
    code, _, err = run(["compare", str(blank), str(examples / "obama.jpg")], capsys)
    assert code == 1 and "blank.png: no face found" in err


def test_missing_file(capsys) -> None:
    code, _, err = run(["compare", "/nonexistent/a.jpg", "/nonexistent/b.jpg"], capsys)
    assert code == 1 and "/nonexistent/a.jpg: no such file" in err
