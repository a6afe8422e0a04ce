"""A process holding the templates in memory (exact search, or the embedded HNSW index's sync) applies
another process's writes through the store's change log: after the first search it never reads every
template again, and it answers exactly as a gallery opened afresh. Both stores."""

from __future__ import annotations

import numpy as np
import pytest

from faceprint.gallery import EmbedderKey, Gallery

KEY = EmbedderKey("dlib-resnet", "1")
EMB = {"embedder": KEY.name, "embedder_version": KEY.version}


def unit(rng: np.random.Generator, n: int, dim: int = 64) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def counting(gallery: Gallery, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the reads of every template of an embedder (``store.matrix``)."""
    calls: list[int] = []
    whole = gallery.store.matrix

    def matrix(key):
        calls.append(1)
        return whole(key)

    monkeypatch.setattr(gallery.store, "matrix", matrix)
    return calls


@pytest.mark.parametrize("combine", ["mean", "nearest"])
def test_a_reader_applies_anothers_writes_without_reading_every_template(
    gallery_url: str, combine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(31)
    vectors = unit(rng, 120)
    probes = vectors[::3] + 0.1 * unit(rng, 40)
    with Gallery.open(gallery_url) as writer, Gallery.open(gallery_url, combine=combine) as reader:
        with writer.store.transaction():
            for i in range(60):
                pid = writer.add_person(f"p{i}")
                for j in (2 * i, 2 * i + 1):
                    writer.add_template(pid, vectors[j], content_hash=f"h{j}", **EMB)
        reads = counting(reader, monkeypatch)
        reader.search(probes, KEY)
        assert len(reads) == 1  # the first search reads them all
        # Another process's writes of every kind: enrol, delete a template, merge, rename, delete.
        newcomer = writer.add_person("newcomer")
        writer.add_template(newcomer, probes[0], content_hash="n", **EMB)
        writer.delete_template(writer.templates("p1")[0].id)
        writer.merge("p2", "p3")
        writer.rename("p4", "renamed")
        writer.delete("p5")
        found = reader.search(probes, KEY, top_k=5)
        assert len(reads) == 1  # ...applied from the change log
        with Gallery.open(gallery_url, combine=combine) as fresh:
            want = fresh.search(probes, KEY, top_k=5)
            assert reader.template_counts(KEY) == fresh.template_counts(KEY)
            held = reader._templates[KEY][1]
            whole = fresh.store.matrix(KEY)
        np.testing.assert_array_equal(held.template_ids, whole.template_ids)
        np.testing.assert_array_equal(held.person_ids, whole.person_ids)
        np.testing.assert_array_equal(held.embeddings, whole.embeddings)
        assert [[(c.person_id, c.name) for c in row] for row in found] == [
            [(c.person_id, c.name) for c in row] for row in want
        ]
        assert found[0][0].name == "newcomer"
        names = {c.name for row in found for c in row}
        assert "renamed" in names or "p4" not in names
        assert not {"p2", "p5", "p4"} & names
        # When the log no longer reaches back (pruned), everything is read again.
        monkeypatch.setattr(reader.store, "changes", lambda since: None)
        writer.add_template("p0", probes[1], content_hash="m", **EMB)
        reader.search(probes, KEY)
        assert len(reads) == 2
