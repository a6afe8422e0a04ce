"""`enroll-dir --ray` and `embed-dir` on a real local Ray cluster (2 CPUs): the same templates as the
single-process enrolment, a rerun skips everything, and a worker killed mid-run neither loses nor
duplicates templates. Kept small: Ray's start and the actors' model loading dominate."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceprint.gallery import Gallery
from faceprint.recognizer import Recognizer

ray = pytest.importorskip("ray", reason="Ray tests need faceprint[ray]")


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance with 2 CPUs for the module (the batch jobs join it)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _templates(url: str) -> list[tuple[str, str]]:
    with Gallery.open(url) as g:
        names = {p.id: p.name for p in g.people()}
        return sorted((names[t.person_id], t.content_hash) for t in g.templates())


@pytest.mark.slow
def test_ray_enroll_dir_matches_single_process_and_resumes(
    ray_cluster, new_gallery_url, lfw_people, analyzer
) -> None:
    from skimage import data

    from faceprint import batch

    root = lfw_people({"Tony_Blair": 3, "Colin_Powell": 3, "Hugo_Chavez": 2})
    (root / "Coffee").mkdir()
    cv2.imwrite(str(root / "Coffee" / "cup.png"), data.coffee()[:, :, ::-1])
    single, distributed = new_gallery_url("single"), new_gallery_url("ray")
    with Gallery.open(single) as g:
        expected = Recognizer(g, analyzer).enroll_dir(root)
    report = batch.enroll_dir(distributed, root, analyzer, workers=2, batch_size=3)
    assert len(report.results) == 9
    assert len(report.enrolled) == len(expected.enrolled) == 8
    assert [(r.name, r.reason) for r in report.refused] == [("Coffee", "no face found")]
    assert _templates(distributed) == _templates(single)
    with Gallery.open(single) as a, Gallery.open(distributed) as b:
        ea = {t.content_hash: t.embedding for t in a.templates()}
        eb = {t.content_hash: t.embedding for t in b.templates()}
        for digest, vector in ea.items():
            # The same models on the same pixels: equal up to float reordering across processes.
            np.testing.assert_allclose(eb[digest], vector, atol=1e-5)
    again = batch.enroll_dir(distributed, root, analyzer, workers=2, batch_size=3)
    assert len(again.skipped) == 8 and not again.enrolled and len(again.refused) == 1


def _enrol_worker_pids() -> list[int]:
    """Processes of the enrolment actors (Ray titles them ``ray::...`` with the class name)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("ray::") and "_EnrollWorker" in cmdline:
            found.append(int(proc.name))
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    ray_cluster, postgres_server, lfw_people, analyzer
) -> None:
    from faceprint import batch

    counts = {"Tony_Blair": 6, "Colin_Powell": 6, "Donald_Rumsfeld": 6, "George_W_Bush": 6}
    root = lfw_people(counts)
    url = postgres_server.new_database()
    Gallery.open(url).close()
    outcome: dict[str, object] = {}

    def run() -> None:
        outcome["report"] = batch.enroll_dir(url, root, analyzer, workers=2, batch_size=4)

    job = threading.Thread(target=run)
    job.start()
    killed = None
    with Gallery.open(url) as watch:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and job.is_alive() and killed is None:
            if len(watch) >= 2 and (pids := _enrol_worker_pids()):
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
    job.join(600)
    assert killed is not None, "the job finished before a worker could be killed"
    assert not job.is_alive() and "report" in outcome
    report = outcome["report"]
    images = sum(counts.values())
    stored = _templates(url)
    assert len(stored) == len(set(stored))  # nothing twice
    hashes = {h for _, h in stored}
    assert len(hashes) == len(stored)
    # Nothing lost: every image is stored, or was refused with a reason.
    assert len(stored) + len(report.refused) == images
    again = batch.enroll_dir(url, root, analyzer, workers=2, batch_size=4)
    assert len(again.skipped) == len(stored) and not again.enrolled
    postgres_server.drop(url)


@pytest.mark.slow
def test_embed_dir_writes_embeddings_and_failures(
    ray_cluster, lfw_people, analyzer, tmp_path: Path, default_dim: int
) -> None:
    from faceprint.cli import main

    root = lfw_people({"Tony_Blair": 2, "Colin_Powell": 1})
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "emb.npz"
    main(["embed-dir", str(root), "--output", str(out), "--workers", "2"])
    saved = np.load(out)
    assert len(saved["paths"]) == 3 and saved["embeddings"].shape == (3, default_dim)
    assert [Path(p).name for p in saved["failed"]] == ["broken.jpg"] and "broken.jpg" in saved["reasons"][0]
    first = Path(saved["paths"][0])
    (face,) = analyzer.analyze(first)
    np.testing.assert_allclose(saved["embeddings"][0], face.embedding, atol=1e-5)
