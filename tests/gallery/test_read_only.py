"""Read-only galleries, missing galleries and unwritable output paths, through the real CLI in a
subprocess (its exit status and stderr as a user sees them).

A read-only place for root: root writes through file modes, so when the tests run as root the CLI runs
in a private mount namespace (``unshare --mount``) in which the gallery's folder is bind-mounted
read-only; SQLite then meets a read-only file system, as an ordinary user meets a folder without write
permission. Unwritable output paths use a path under a regular file (``file.txt/sub``), which nobody can
create, root included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faceprint.gallery import Gallery

CLI = "import sys; from faceprint.cli import main; main(sys.argv[1:])"


def _can_mount_read_only() -> bool:
    if os.geteuid() != 0:
        return True  # file modes do it
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


read_only_place = pytest.mark.skipif(
    not _can_mount_read_only(),
    reason="running as root without `unshare --mount`: no way to make a folder read-only for root",
)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def cli_read_only(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI with ``folder`` (and everything in it) unwritable."""
    command = [sys.executable, "-c", CLI, *args]
    if os.geteuid() == 0:
        script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        command = ["unshare", "--mount", "sh", "-c", script, str(folder), *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    try:
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        return subprocess.run(command, capture_output=True, text=True, timeout=300)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@read_only_place
@pytest.mark.slow
def test_reading_commands_work_on_a_read_only_gallery(enrolled: Path, tmp_path: Path, knn_dir: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copy(enrolled, folder / "g.sqlite3")
    gallery = ["--gallery", str(folder / "g.sqlite3")]
    before = sorted(p.name for p in folder.iterdir())

    listed = cli_read_only(folder, "people", "list", *gallery)
    assert listed.returncode == 0, listed.stderr
    assert "biden" in listed.stdout and "obama" in listed.stdout and "2 people" in listed.stdout
    photo = knn_dir / "test" / "obama_and_biden.jpg"
    named = cli_read_only(folder, "identify", str(photo), *gallery)
    assert named.returncode == 0, named.stderr
    assert "obama" in named.stdout and "biden" in named.stdout
    shown = cli_read_only(folder, "threshold", *gallery)
    assert shown.returncode == 0 and "identify: threshold" in shown.stdout, shown.stderr

    # Changing it is refused in one line that says why.
    renamed = cli_read_only(folder, "people", "rename", "obama", "Barack", *gallery)
    one_line_error(renamed, "cannot be written")
    image = knn_dir / "train" / "obama" / "obama.jpg"
    one_line_error(cli_read_only(folder, "enroll", "someone", str(image), *gallery), "cannot be written")
    assert sorted(p.name for p in folder.iterdir()) == before


def test_reading_commands_on_a_missing_gallery_say_so_and_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo.sqlite3"
    for args in (
        ["identify", str(tmp_path / "x.jpg")],
        ["people", "list"],
        ["people", "delete", "obama", "--yes"],
        ["threshold"],
        ["threshold", "0.5"],
    ):
        one_line_error(cli(*args, "--gallery", str(missing)), str(missing), "no gallery here")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_paths_give_one_line_errors(tmp_path: Path, faces_dir: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    photo = next((faces_dir / "face_recognition" / "examples").glob("obama*.jpg"))
    inside = blocker / "sub"
    one_line_error(cli("embed", str(photo), "--out", str(inside / "e.npy")), str(inside))
    one_line_error(cli("embed", str(photo), "--out", "/proc/faceprint.npy"), "/proc/faceprint.npy")
    one_line_error(cli("detect", str(photo), "--draw", str(inside)), str(inside))
    one_line_error(cli("detect", str(photo), env={"FACEPRINT_CACHE_DIR": str(inside)}), str(inside))


def test_draw_keeps_names_unique_and_formats(tmp_path: Path, faces_dir: Path) -> None:
    from PIL import Image

    photo = next((faces_dir / "face_recognition" / "examples").glob("obama*.jpg"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.open(photo).save(tmp_path / "a" / "same.png")
    Image.open(photo).save(tmp_path / "b" / "same.png")
    Image.open(photo).save(tmp_path / "b" / "other.gif")
    shutil.copy(photo, tmp_path / "b" / "same.jpg")
    inputs = [tmp_path / "a" / "same.png", tmp_path / "b" / "same.png", tmp_path / "b" / "other.gif"]
    inputs.append(tmp_path / "b" / "same.jpg")
    out = tmp_path / "drawn"
    proc = cli("detect", *map(str, inputs), "--draw", str(out))
    assert proc.returncode == 0, proc.stderr
    formats = {p.name: Image.open(p).format for p in out.iterdir()}
    assert formats == {"same.png": "PNG", "same-2.png": "PNG", "other.png": "PNG", "same.jpg": "JPEG"}


def test_gallery_open_read_only_refuses_to_create(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no gallery here"):
        Gallery.open(tmp_path / "none.sqlite3", read_only=True)
    assert not (tmp_path / "none.sqlite3").exists()
