"""The gallery commands end to end, and a kill -9 in the middle of `faceprint enroll-dir`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from faceprint.cli import main
from faceprint.gallery import Gallery
from faceprint.io import load_image
from faceprint.recognizer import Recognizer
from faceprint.thresholds import BUILTIN
from faceprint.types import EmbedderKey


def default_key(**options: object) -> EmbedderKey:
    """The default embedder's version with these options (what a command without --embedder uses)."""
    from faceprint.analyzer import FaceAnalyzer

    return EmbedderKey.of(FaceAnalyzer(embedder_options=options).embedder)


# The default embedder's built-in 1:1 thresholds as the CLI prints them (with flip: the default; one
# view: --no-flip).
FLIP = f"{BUILTIN[default_key()].threshold:.4f}"
ONE_VIEW = f"{BUILTIN[default_key(flip=False)].threshold:.4f}"


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
def test_identify_and_people_commands(
    enrolled_url: str, tmp_path: Path, knn_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    gallery = ["--gallery", enrolled_url]
    group = knn_dir / "test" / "obama_and_biden.jpg"
    args = ["identify", str(group), "--json", "--top-k", "2", "--draw", str(tmp_path / "drawn"), *gallery]
    code, out, _ = run(args, capsys)
    faces = json.loads(out)["faces"]
    assert code == 0 and sorted(f["name"] for f in faces) == ["biden", "obama", "unknown"]
    assert all(len(f["candidates"]) == 2 for f in faces)
    # The probability agrees with the decision; the open-set evidence comes with every face.
    assert all((f["p_nearest"] >= 0.5) == (f["name"] != "unknown") for f in faces)
    assert all(f["gallery_size"] == 2 and f["threshold"] > 0 and f["margin"] > 0 for f in faces)
    assert load_image(tmp_path / "drawn" / "obama_and_biden.jpg").shape == load_image(group).shape

    code, out, _ = run(["people", "list", "--json", *gallery], capsys)
    assert sorted((p["name"], p["templates"]) for p in json.loads(out)) == [("biden", 1), ("obama", 1)]
    assert run(["people", "rename", "obama", "Barack Obama", *gallery], capsys)[0] == 0
    code, out, _ = run(["people", "show", "Barack Obama", *gallery], capsys)
    assert code == 0 and "obama.jpg" in out
    assert run(["people", "delete", "Barack Obama", "--yes", *gallery], capsys)[0] == 0
    code, out, _ = run(["people", "list", "--json", *gallery], capsys)
    assert [p["name"] for p in json.loads(out)] == ["biden"]
    code, _, err = run(["people", "show", "Barack Obama", *gallery], capsys)
    assert code == 1 and "no person 'Barack Obama'" in err


def test_no_flip_queries_a_one_view_gallery(
    enrolled_url: str, knn_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--no-flip` before the command switches every analyzer to one view (embedder version 2): its
    own threshold, and a gallery enrolled with flip refuses its embeddings."""
    gallery = ["--gallery", enrolled_url]
    code, flip, _ = run(["threshold", *gallery], capsys)
    assert code == 0 and FLIP in flip
    code, single, _ = run(["--no-flip", "threshold", *gallery], capsys)
    assert code == 0 and ONE_VIEW in single
    photo = str(knn_dir / "test" / "obama_and_biden.jpg")
    code, _, err = run(["--no-flip", "identify", photo, *gallery], capsys)
    assert code == 1 and "cannot be compared" in err
    code, out, _ = run(["identify", photo, *gallery], capsys)  # each invocation starts from the default
    assert code == 0 and "obama" in out.lower()


def test_compare_decides_as_verify(enrolled_url: str, knn_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """`compare` (no gallery) and `verify` (a gallery without settings of its own) give the same distance,
    threshold and verdict, per embedder version; a gallery's own threshold moves `verify` only."""
    gallery = ["--gallery", enrolled_url]
    a, b = str(knn_dir / "train" / "obama" / "obama.jpg"), str(knn_dir / "train" / "obama" / "obama2.jpg")
    pattern = re.compile(r"distance (\d\.\d{4}) \(threshold (\d\.\d{4})\)")
    for flag, threshold in (([], FLIP), (["--no-flip"], ONE_VIEW)):
        code, compared, _ = run([*flag, "compare", a, b], capsys)
        assert code == 0 and "same person" in compared
        code, verified, _ = run([*flag, "verify", a, b, *gallery], capsys)
        assert code == 0 and verified.startswith("same person")
        assert pattern.search(compared).groups() == pattern.search(verified).groups()
        assert pattern.search(compared).group(2) == threshold
    assert run(["threshold", "0.2", *gallery], capsys)[0] == 0
    code, verified, _ = run(["verify", a, b, *gallery], capsys)
    assert code == 0 and "different people" in verified and "threshold 0.2000" in verified


def test_calibrate_honours_no_flip(knn_dir: Path, gallery_url: str, capsys: pytest.CaptureFixture) -> None:
    """`--no-flip calibrate --save` fits one-view embeddings and stores the result for that version only."""
    gallery = ["--gallery", gallery_url]
    args = ["calibrate", "--folder", str(knn_dir / "train"), "--n-pairs", "8", "--far", "0.25", "--save"]
    code, out, _ = run(["--no-flip", *args, *gallery], capsys)
    one_view = default_key(flip=False)
    assert code == 0 and f"embedder {one_view}\n" in out
    fitted = re.search(r"threshold (\d\.\d{4}):", out).group(1)
    code, single, _ = run(["--no-flip", "threshold", *gallery], capsys)
    assert code == 0 and f"threshold {fitted}" in single and "generated pairs" in single
    code, flip, _ = run(["threshold", *gallery], capsys)  # the default (flip) keeps its built-in calibration
    assert code == 0 and f"threshold {FLIP}" in flip
    with Gallery.open(gallery_url) as g:
        flip = default_key()
        assert g.store.get_setting(f"calibration:{one_view.name}@{one_view.version}") is not None
        assert g.store.get_setting(f"calibration:{flip.name}@{flip.version}") is None


def test_enroll_refusal_exits_non_zero(
    tmp_path: Path, gallery_url: str, capsys: pytest.CaptureFixture
) -> None:
    from skimage import data

    cup = tmp_path / "cup.png"
    cv2.imwrite(str(cup), data.coffee()[:, :, ::-1])
    code, out, _ = run(["enroll", "someone", str(cup), "--gallery", gallery_url], capsys)
    assert code == 1 and "refused" in out and "no face found" in out


def test_foreign_gallery_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("shopping list\n")
    code, _, err = run(["people", "list", "--gallery", str(bad)], capsys)
    assert code == 1 and f"{bad}: not a gallery database" in err


@pytest.mark.slow
def test_kill_9_during_enroll_dir_then_rerun_completes(gallery_url: str, lfw_people, analyzer) -> None:
    # Enough images that the interruption lands mid-way however fast the machine is.
    counts = {"Colin_Powell": 10, "Tony_Blair": 10, "Donald_Rumsfeld": 10, "George_W_Bush": 10}
    people = lfw_people(counts)
    total = sum(counts.values())
    path = gallery_url
    Gallery.open(path).close()  # created before the writer starts, so that the loop below can watch it
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
        with Gallery.open(path) as watch:
            while time.monotonic() < deadline and proc.poll() is None and len(watch) < 2:
                time.sleep(0.02)
        assert proc.poll() is None, "enroll-dir finished before it could be interrupted"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Gallery.open(path) as g:
        assert g.store.integrity_check() == ["ok"]
        interrupted = len(g)
        assert 2 <= interrupted < total
        report = Recognizer(g, analyzer).enroll_dir(people)
        assert len(report.skipped) == interrupted
        assert len(g) == len(report.enrolled) + interrupted == total - len(report.refused)
        hashes = [t.content_hash for t in g.templates()]
        assert len(hashes) == len(set(hashes))


@pytest.mark.slow
def test_correct_wrong_confirm_and_threshold_commands(
    gallery_url: str, lfw_dir: Path, analyzer, capsys: pytest.CaptureFixture
) -> None:
    gallery = ["--gallery", gallery_url]
    blair, powell = (lfw_dir / n / f"{n}_0001.jpg" for n in ("Tony_Blair", "Colin_Powell"))
    code, _, err = run(["threshold", *gallery], capsys)
    assert code == 1 and "no gallery here" in err  # reading commands never create one
    Gallery.open(gallery_url).close()
    code, out, _ = run(["threshold", *gallery], capsys)
    assert code == 0 and "nobody enrolled yet" in out and "-0.00" not in out
    assert run(["enroll", "blair", str(blair), *gallery], capsys)[0] == 0
    # A lax fixed threshold names Powell "blair"; the user says that is wrong.
    assert run(["threshold", "1.5", *gallery], capsys)[0] == 0
    code, out, _ = run(["identify", str(powell), "--json", *gallery], capsys)
    assert code == 0 and json.loads(out)["faces"][0]["name"] == "blair"
    code, out, _ = run(["correct", "wrong", str(powell), "--name", "blair", *gallery], capsys)
    assert code == 0 and "is not blair" in out
    code, out, _ = run(["identify", str(powell), "--json", *gallery], capsys)
    face = json.loads(out)["faces"][0]
    assert face["name"] == "unknown" and face["rejected"] == ["blair"]
    code, out, _ = run(["correct", "list", *gallery], capsys)
    assert code == 0 and "face is not blair" in out and "1 correction(s)" in out
    # Confirming a good photo adds a template; a person who is not enrolled is refused in one line.
    code, out, _ = run(
        [
            "correct",
            "confirm",
            str(lfw_dir / "Tony_Blair" / "Tony_Blair_0002.jpg"),
            "--name",
            "blair",
            *gallery,
        ],
        capsys,
    )
    assert code == 0 and "added as a template" in out
    code, _, err = run(["correct", "confirm", str(powell), "--name", "nobody", *gallery], capsys)
    assert code == 1 and "no person 'nobody'" in err and "Traceback" not in err
    code, out, _ = run(["threshold", "--reset", "--fpir", "0.005", *gallery], capsys)
    assert code == 0 and "for 1 person, chosen for FPIR 0.50%" in out and "expected FPIR 0.50%" in out


@pytest.mark.slow
def test_reembed_switches_embedder(
    enrolled_url: str, tmp_path: Path, knn_dir: Path, analyzer, capsys
) -> None:
    path = enrolled_url
    moved = tmp_path / "obama2.jpg"
    shutil.copy(knn_dir / "train" / "obama" / "obama2.jpg", moved)
    with Gallery.open(path) as g:
        # one template from bytes (no stored image), one from a file that then disappears
        recognizer = Recognizer(g, analyzer)
        biden = (knn_dir / "train" / "biden" / "biden.jpg").read_bytes()
        assert recognizer.enroll("biden", biden).status == "enrolled"
        assert recognizer.enroll("obama", moved).status == "enrolled"
    moved.unlink()
    gallery = ["--gallery", str(path)]
    code, out, _ = run(["--embedder", "facenet", "reembed", *gallery], capsys)
    assert code == 1  # two templates could not be re-embedded, and it says why
    assert "no stored image" in out and "no longer there" in out
    assert "2 re-embedded with facenet" in out
    photo = str(knn_dir / "test" / "obama_and_biden.jpg")
    for embedder in ("facenet", default_key().name):  # the new embedder works, and the old one still does
        code, out, _ = run(["--embedder", embedder, "identify", photo, *gallery], capsys)
        assert code == 0 and "obama" in out and "biden" in out, (embedder, out)
    code, out, _ = run(["--embedder", "facenet", "reembed", *gallery], capsys)
    assert "0 re-embedded" in out and "skipped" in out  # a rerun redoes nothing
    with Gallery.open(path) as g:
        assert {k.name for k in g.embedders()} == {default_key().name, "facenet"}


@pytest.mark.slow
def test_a_gallery_keeps_the_embedder_it_was_enrolled_with(
    new_gallery_url, knn_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """Without --embedder, a gallery of dlib-resnet templates only is searched and enrolled into with
    dlib-resnet (not the default), saying so; once `reembed` has given most people templates of the
    default, the default searches and the note counts the people it cannot name."""
    from faceprint.analyzer import FaceAnalyzer
    from faceprint.models import DEFAULT_EMBEDDER

    assert DEFAULT_EMBEDDER != "dlib-resnet"

    def named(out: str) -> list[str]:
        return sorted(n for n in re.findall(r"#\d+\s+(\S+)", out) if n != "unknown")

    url = new_gallery_url()
    gallery = ["--gallery", url]
    train = knn_dir / "train"
    with Gallery.open(url) as g:
        old = Recognizer(g, FaceAnalyzer(embedder="dlib-resnet"))
        assert old.enroll("obama", train / "obama" / "obama.jpg").status == "enrolled"
        # From bytes: no stored image, so `reembed` cannot make this one's twin.
        assert old.enroll("biden", (train / "biden" / "biden.jpg").read_bytes()).status == "enrolled"
    photo = str(knn_dir / "test" / "obama_and_biden.jpg")
    code, out, err = run(["identify", photo, *gallery], capsys)
    assert code == 0 and named(out) == ["biden", "obama"], out + err
    assert f"no templates of the default embedder {DEFAULT_EMBEDDER}: searching it with dlib-resnet" in err
    # Enrolling without --embedder keeps to the gallery's embedder (another one would be refused).
    code, out, err = run(["enroll", "obama", str(train / "obama" / "obama2.jpg"), *gallery], capsys)
    assert code == 0 and "searching it with dlib-resnet" in err and "2 template(s)" in out, out + err
    with Gallery.open(url, read_only=True) as g:
        assert {k.name for k in g.embedders()} == {"dlib-resnet"}
        with pytest.warns(UserWarning, match="searching it with dlib-resnet"):
            assert Recognizer(g).key.name == "dlib-resnet"
    code, out, err = run(["reembed", *gallery], capsys)
    assert code == 1 and f"2 re-embedded with {DEFAULT_EMBEDDER}" in out and "no stored image" in out, out
    code, out, err = run(["identify", photo, *gallery], capsys)
    assert code == 0 and named(out) == ["obama"], out + err
    assert re.search(f"1 of the 2 people in .* have no {DEFAULT_EMBEDDER} templates and cannot be named", err)
    code, out, err = run(["--embedder", "dlib-resnet", "identify", photo, *gallery], capsys)
    assert code == 0 and named(out) == ["biden", "obama"] and "have no" not in err, out + err
