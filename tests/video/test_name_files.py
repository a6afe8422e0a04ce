"""Files made from names use the name policy's slug: a person stored as "AC/DC" (by a version before
the policy refused separators) gets a face crop in the crops folder, not a crash or a file elsewhere."""

from __future__ import annotations

from conftest import ENROLLED, clip_photos
from testclip import write_test_clip

from faceprint.gallery import Gallery
from faceprint.gallery.store import NewTemplate
from faceprint.recognizer import Recognizer
from faceprint.video.pipeline import VideoRecognizer
from faceprint.video.sources import open_source


def test_crops_of_a_person_named_with_a_slash(lfw_dir, analyzer, lfw_gallery, tmp_path):
    legacy = Gallery.open(tmp_path / "legacy.sqlite3")
    pid = legacy.store.add_person("AC/DC")  # the store, as older versions' name checks let it through
    for t in lfw_gallery.templates(ENROLLED[0]):
        legacy.store.add_template(NewTemplate(pid, t.embedder, t.embedding, content_hash=t.content_hash))
    clip = write_test_clip(
        clip_photos(lfw_dir, (ENROLLED[0],)),
        {ENROLLED[0]},
        tmp_path / "clip.mp4",
        shots=1,
        frames_per_shot=12,
    )
    crops = tmp_path / "crops"
    try:
        summary = VideoRecognizer(analyzer, Recognizer(legacy, analyzer)).run(
            open_source(clip.path), crops_dir=crops
        )
    finally:
        legacy.close()
    assert "AC/DC" in summary.names
    files = sorted(p.name for p in crops.iterdir())
    assert any(name.startswith("track_") and "_AC_DC-" in name for name in files), files
    assert all(p.is_file() for p in crops.iterdir())  # no "track_1_AC" folder
