"""The README's Python example runs as written, on real photos: its file names are given the
face_recognition example photos (PEOPLE/ = the knn example's five people, group.jpg = Obama and Biden
together), so the front door's idiom cannot drift from the API."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python() -> str:
    """The code block of the README's "## Python" section."""
    section = README.read_text().split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's Python section should hold exactly one python block"
    return blocks[0]


def test_readme_python_example_runs(tmp_path: Path, faces_dir: Path, monkeypatch, default_dim: int) -> None:
    examples = faces_dir / "face_recognition" / "examples"
    shutil.copytree(examples / "knn_examples" / "train", tmp_path / "PEOPLE")
    shutil.copy(examples / "knn_examples" / "test" / "obama_and_biden.jpg", tmp_path / "group.jpg")
    shutil.copy(examples / "biden.jpg", tmp_path / "biden2.jpg")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_python(), str(README), "exec"), {"__name__": "readme"})
    lines = out.getvalue().splitlines()
    # Every face analysed (box, score, landmarks over several lines, embedding shape), then one match line
    # per face: "name distance confidence". The photo's two people are named; any other face (a small
    # one in the background) is nobody enrolled.
    faces = sum(line.endswith(f"({default_dim},)") for line in lines)
    names = [line.split()[0] for line in lines[-faces:]]
    assert faces >= 2 and lines[-faces - 1].endswith(f"({default_dim},)"), lines
    assert sorted(n for n in names if n != "unknown") == ["biden", "obama"], names
    assert (tmp_path / "team.sqlite3").is_file()
