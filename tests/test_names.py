"""The one name policy (faceprint.names) on hostile names, through the gallery, enrolment from folders
and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import GalleryError, InvalidNameError
from faceprint.gallery import Gallery
from faceprint.names import MAX_NAME_LENGTH, person_name, slug

HOSTILE = {
    "../../etc": "/ or \\",
    "AC/DC": "/ or \\",
    "C:\\Users": "/ or \\",
    ".hidden": "start with a dot",
    "..": "start with a dot",
    "two\nlines": "U+000A",
    "tab\there": "U+0009",
    "red\x1b[31mALERT\x1b[0m": "U+001B",
    "bell\x07": "U+0007",
    "\u202egnp.exe": "U+202E",  # right-to-left override: displays as another name
    "zero\u200bwidth": "U+200B",
    "line\u2028sep": "U+2028",
    "": "empty",
    "   ": "empty",
    "x" * (MAX_NAME_LENGTH + 1): f"at most {MAX_NAME_LENGTH}",
    "Unknown": "reserved",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_names_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(InvalidNameError) as refused:
        person_name(name)
    message = str(refused.value)
    assert HOSTILE[name] in message
    assert message.isprintable()  # the reason never carries the escape sequence itself


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("  Ann   Lee ", "Ann Lee"),
        ("Zoë Ça", "Zoë Ça"),
        ("Zoe\u0308", "Zoë"),  # NFC: the same name typed two ways is one person
        ("Jean\u00a0Paul", "Jean Paul"),
        ("O'Brien-Smith Jr.", "O'Brien-Smith Jr."),
        ("\U0001f469\u200d\U0001f467 family", "\U0001f469\u200d\U0001f467 family"),
        ("x" * MAX_NAME_LENGTH, "x" * MAX_NAME_LENGTH),
    ],
)
def test_ordinary_names_are_kept(name: str, stored: str) -> None:
    assert person_name(name) == stored


def test_slugs_are_safe_file_names_and_keep_names_apart() -> None:
    for name in [*HOSTILE, "AC_DC", "Zoë"]:
        s = slug(name)
        assert s and "/" not in s and "\\" not in s and not s.startswith(".") and s.isprintable()
        assert len(s) <= 67
    assert slug("AC/DC") != slug("AC_DC") and slug("AC_DC") == "AC_DC"


def test_the_gallery_refuses_hostile_names_on_every_way_in(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vector = rng.standard_normal(128).astype(np.float32)
    with Gallery.open(tmp_path / "g.sqlite3") as g:
        for name in HOSTILE:
            with pytest.raises(GalleryError):
                g.add_person(name)
        pid = g.add_person("Ann")
        with pytest.raises(InvalidNameError):
            g.rename(pid, "../../etc")
        g.add_template(pid, vector, embedder="dlib-resnet", embedder_version="2", content_hash="a")
        g.export_json(tmp_path / "export.json")
    text = (tmp_path / "export.json").read_text().replace('"Ann"', '"bad\\u001b[2Jname"')
    (tmp_path / "export.json").write_text(text)
    with Gallery.open(tmp_path / "other.sqlite3") as other:
        with pytest.raises(InvalidNameError, match="U\\+001B"):
            other.import_json(tmp_path / "export.json")
        assert other.people() == []  # the import is one transaction


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from faceprint.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=os.environ
    )


def test_cli_enroll_and_enroll_dir_refuse_hostile_names(tmp_path: Path, faces_dir: Path) -> None:
    photo = next((faces_dir / "face_recognition" / "examples").glob("obama*.jpg"))
    gallery = ["--gallery", str(tmp_path / "g.sqlite3")]
    proc = _cli("enroll", "evil\x1b]0;pwned\x07", str(photo), *gallery)
    assert proc.returncode == 1 and "\x1b" not in proc.stderr and "Traceback" not in proc.stderr
    assert "U+001B" in proc.stderr
    # enroll-dir: a folder with a hostile name is refused, with the reason; the others are enrolled.
    people = tmp_path / "people"
    for folder in ("Good Name", ".hidden", "tab\tname"):
        (people / folder).mkdir(parents=True)
        (people / folder / "a.jpg").write_bytes(photo.read_bytes())
    proc = _cli("enroll-dir", str(people), *gallery)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "\t" not in proc.stdout and "Traceback" not in proc.stderr
    with Gallery.open(tmp_path / "g.sqlite3", read_only=True) as g:
        assert [p.name for p in g.people()] == ["Good Name"]


def test_names_stored_before_the_policy_are_printed_escaped(tmp_path: Path) -> None:
    with Gallery.open(tmp_path / "g.sqlite3") as g:
        g.store.add_person("old\x1b[2Jname\u202e")  # the store, as older versions' checks let it through
    proc = _cli("people", "list", "--gallery", str(tmp_path / "g.sqlite3"))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout
    assert "old\\x1b[2Jname\\u202e" in proc.stdout
    # and it can still be deleted by that name
    proc = _cli("people", "delete", "old\x1b[2Jname\u202e", "--yes", "--gallery", str(tmp_path / "g.sqlite3"))
    assert proc.returncode == 0 and "\x1b" not in proc.stdout, proc.stderr
