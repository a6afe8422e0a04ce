"""Video sources: files, folders, real-time pacing with frame dropping, loops, and clear errors."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from conftest import write_video

from faceprint.video.sources import CaptureSource, VideoSourceError, open_source


def test_file_in_full_mode_gives_every_frame_in_order_with_timestamps(grey_clip):
    source = open_source(grey_clip(20))
    frames = list(source)
    source.close()
    assert [f.index for f in frames] == list(range(20))
    assert source.dropped == 0 and not source.live
    assert np.allclose([f.timestamp for f in frames], np.arange(20) / 25.0, atol=1e-3)
    levels = [float(f.image.mean()) for f in frames]
    assert np.all(np.diff(levels) > 0)  # frame i was written with grey level 5*i; mp4v is lossy
    assert all(abs(level - 5 * i) < 5 for i, level in enumerate(levels))


def test_frames_are_rgb(tmp_path):
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 255
    source = open_source(write_video(tmp_path / "red.mp4", [red] * 3))
    frame = next(iter(source))
    source.close()
    r, g, b = frame.image.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def test_folder_of_frames_in_name_order(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), np.full((20, 30, 3), 50 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = list(open_source(tmp_path))
    assert [round(float(f.image.mean())) for f in frames] == [0, 50, 100]
    assert [f.timestamp for f in frames] == [0.0, 0.04, 0.08]


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(VideoSourceError, match="no image frames"):
        open_source(tmp_path)
    (tmp_path / "frame_0.jpg").write_bytes(b"garbage")
    with pytest.raises(VideoSourceError, match=r"frame 0 of .*frame_0.jpg"):
        list(open_source(tmp_path))


def test_missing_and_corrupt_videos_give_clear_errors(tmp_path):
    with pytest.raises(VideoSourceError, match=r"nothing\.mp4: no such file"):
        open_source(tmp_path / "nothing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoSourceError, match=r"corrupt\.mp4: (cannot open|no frame)"):
        list(open_source(corrupt))


def test_truncated_video_is_an_error_not_a_short_video(grey_clip, tmp_path):
    data = grey_clip(60, size=(160, 120)).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoSourceError, match=r"cut\.mp4"):
        list(open_source(cut))


def test_realtime_mode_drops_frames_when_the_consumer_is_slow(grey_clip):
    source = open_source(grey_clip(50), realtime=True)  # 2 s at 25 fps
    got = []
    started = time.monotonic()
    for frame in source:
        got.append(frame)
        time.sleep(0.1)  # a consumer at 10 fps
    source.close()
    elapsed = time.monotonic() - started
    assert source.live and source.dropped > 10
    assert len(got) + source.dropped == 50  # every frame was either delivered or counted as dropped
    assert [f.index for f in got] == sorted(f.index for f in got)
    assert elapsed < 3.5  # paced like a camera, not lagging behind it


def test_ended_stream_is_reported_clearly(grey_clip):
    # A live capture whose reads start failing (camera unplugged, network stream ended).
    path = grey_clip(5)
    source = CaptureSource(str(path), "rtsp://camera.example/stream", live=True, max_failed_reads=3)
    with pytest.raises(VideoSourceError, match=r"stream stopped delivering frames after 5 frame"):
        list(source)
    source.close()


def test_ended_stream_error_reaches_the_consumer_through_the_reader_thread(grey_clip):
    source = open_source(grey_clip(5), realtime=True)
    source._source._capture.release()  # the stream dies under the reader
    with pytest.raises(VideoSourceError, match="no frame could be decoded"):
        list(source)
    source.close()


def test_loop_replays_with_increasing_timestamps(grey_clip):
    source = open_source(grey_clip(10), loop=True)
    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == 25:
            break
    source.close()
    assert [f.index for f in frames] == list(range(25))
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)
    assert abs(float(frames[10].image.mean()) - float(frames[0].image.mean())) < 3


def test_camera_that_does_not_exist_is_a_clear_error():
    with pytest.raises(VideoSourceError, match="camera 97: cannot open"):
        open_source(97)


def test_unreachable_stream_is_a_clear_error():
    with pytest.raises(VideoSourceError, match=r"rtsp://127\.0\.0\.1:9/none: cannot open this stream"):
        open_source("rtsp://127.0.0.1:9/none")
