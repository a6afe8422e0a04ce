"""Enrolment from a clip: K good, varied frames of the one face present; clear errors otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ENROLLED, STRANGERS, clip_photos, write_video
from testclip import write_test_clip

from faceprint.errors import ManyFacesError, NoFaceError
from faceprint.io import load_image
from faceprint.video.enrollment import pick_enrollment_frames
from faceprint.video.sources import open_source


def test_picks_k_distinct_frames_each_with_one_face(tmp_path, lfw_dir, analyzer):
    name = ENROLLED[0]
    clip = write_test_clip(
        clip_photos(lfw_dir, (name,)), {name}, tmp_path / "one.mp4", shots=3, frames_per_shot=6
    )
    frames = pick_enrollment_frames(str(clip.path), k=3, analyzer=analyzer)
    assert len(frames) == 3
    for frame in frames:
        assert frame.shape == (360, 640, 3) and frame.dtype == np.uint8
        assert len(analyzer.detect(frame)) == 1
    # Varied: no two picks are the same frame.
    assert all(not np.array_equal(a, b) for i, a in enumerate(frames) for b in frames[i + 1 :])


def test_two_people_in_every_frame_is_refused(tmp_path, lfw_dir, analyzer):
    photos = clip_photos(lfw_dir, (ENROLLED[1], STRANGERS[0]), count=1)
    pair = np.hstack([load_image(paths[0]) for paths in photos.values()])
    clip = write_video(tmp_path / "two.mp4", [np.roll(pair, 4 * i, axis=1) for i in range(6)])
    with pytest.raises(ManyFacesError, match=r"two\.mp4: 6 of 6 frames show several faces"):
        pick_enrollment_frames(str(clip), analyzer=analyzer)


def test_no_face_is_a_clear_error(tmp_path, analyzer):
    blank = write_video(tmp_path / "blank.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 10)
    with pytest.raises(NoFaceError, match=r"blank\.mp4: no frame with a single clear face"):
        pick_enrollment_frames(str(blank), analyzer=analyzer)


def test_different_people_one_after_another_are_refused(tmp_path, lfw_dir, analyzer):
    people = (ENROLLED[0], ENROLLED[1], ENROLLED[2], STRANGERS[0])
    # Four one-person shots of four different people (the clip shows two people only on odd shots).
    frames = []
    for i, name in enumerate(people):
        clip = write_test_clip(
            clip_photos(lfw_dir, (name,), count=1), set(), tmp_path / f"{i}.mp4", shots=1, frames_per_shot=3
        )
        frames += [frame.image for frame in open_source(clip.path)]
    mixed = write_video(tmp_path / "mixed.mp4", frames)
    with pytest.raises(ManyFacesError, match=r"mixed\.mp4: the frames with one face show different people"):
        pick_enrollment_frames(str(mixed), analyzer=analyzer)
