"""Readers keep working while another process writes (SQLite's WAL; PostgreSQL's MVCC), and a kill -9 of
a writer leaves a consistent gallery holding exactly the committed enrolments. On both stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from faceprint.gallery import EmbedderKey, Gallery

KEY = EmbedderKey("dlib-resnet", "1")

# Adds people one transaction each (a person and two templates), forever, until killed.
WRITER = """
import sys, numpy as np
from faceprint.gallery import Gallery
rng = np.random.default_rng(0)
with Gallery.open(sys.argv[1]) as g:
    i = 0
    while True:
        with g.store.transaction():
            pid = g.add_person(f"p{i:06d}")
            for j in range(2):
                v = rng.standard_normal(128).astype(np.float32)
                g.add_template(pid, v, embedder="dlib-resnet", embedder_version="1", content_hash=f"{i}-{j}")
        i += 1
        print(i, flush=True)
"""


def _writer(path: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, env=env, text=True)


def test_reader_searches_while_another_process_writes_then_survives_kill_9(gallery_url: str) -> None:
    path = gallery_url
    Gallery.open(path).close()
    writer = _writer(path)
    try:
        assert writer.stdout is not None
        writer.stdout.readline()  # first commit done
        probe = np.ones(128, np.float32) / np.sqrt(128)
        seen = []
        with Gallery.open(path) as reader:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                n = len(reader)
                before = len(reader.people())
                (cands,) = reader.search(probe, KEY, top_k=1_000_000)  # every person, ranked
                after = len(reader.people())
                # The writer only adds, so a search ranks exactly the people committed by some moment
                # between the two counts: everyone counted before, no one uncounted after (an index that
                # missed the writer's commits would rank fewer).
                assert before <= len(cands) <= after
                assert len({c.person_id for c in cands}) == len(cands)
                assert all(c.name.startswith("p") for c in cands)  # names from the same snapshot
                seen.append((n, len(cands)))
        counts = [n for n, _ in seen]
        ranked = [k for _, k in seen]
        assert counts == sorted(counts) and counts[-1] > counts[0] > 0  # the reader saw the writer's progress
        assert ranked == sorted(ranked) and ranked[-1] > ranked[0]  # and so did its searches
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    with Gallery.open(path) as g:
        assert g.store.integrity_check() == ["ok"]
        people = g.people()
        # Every person is whole: the transaction holding a person and their templates was all-or-nothing.
        assert people and all(p.n_templates == 2 for p in people)
        assert len(g) == 2 * len(people)
