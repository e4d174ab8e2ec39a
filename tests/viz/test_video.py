"""VideoWriter: frame count and size read back, atomic writes, overwrite refusal (headless, Agg)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from celltrack.cftrack import CFTracker, FrameState
from celltrack.features import RawExtractor
from celltrack.graph import measure_detections
from celltrack.synthetic import drifting_nuclei
from celltrack.viz import TrackingView, VideoWriter, ViewConfig, render_frame, write_video

WINDOW = 21
SMALL = ViewConfig(figsize=(4.0, 1.6), dpi=40)  # 160 × 64 px frames keep the tests fast
SMALL_SHAPE = (64, 160, 3)
HAS_FFMPEG = importlib.util.find_spec("imageio_ffmpeg") is not None


def make_states(count: int = 5, n: int = 3) -> list[FrameState]:
    """Hand-made tracker states on 64 × 64 uint16 frames; the last one has every cell lost."""
    rng = np.random.default_rng(0)
    states = []
    for t in range(count):
        frame = (33000 + rng.normal(0, 30, (64, 64))).astype(np.uint16)
        positions = np.array([[10.0 + t, 12.0 + 2 * t], [40.0, 50.0], [60.0, 3.0]])[:n]
        active = np.full(n, t < count - 1)
        positions[~active] = np.nan
        response = rng.random((WINDOW, WINDOW)) if 0 < t < count - 1 else None
        psr = np.where(active, 10.0 + t, np.nan)
        states.append(FrameState(t, frame, positions, active, psr / 20, psr, WINDOW, response, 0))
    return states


def read_frames(path: Path) -> list[np.ndarray]:
    """Decode every frame, (H, W, 3) uint8."""
    if path.suffix == ".gif":
        return list(iio.imread(path, index=None))
    import imageio_ffmpeg

    # imageio's ffmpeg reader leaks its pipes (ResourceWarning, an error here), so decode with one ffmpeg
    # call and take the frame size from the input stream it reports.
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    decoded = subprocess.run(command, capture_output=True, check=True)
    stream = re.search(r"Stream #0:0.*Video:.*?, (\d+)x(\d+)", decoded.stderr.decode())
    assert stream is not None, decoded.stderr.decode()
    width, height = int(stream[1]), int(stream[2])
    raw = decoded.stdout
    return list(np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3))


SUFFIXES = pytest.mark.parametrize(
    "suffix",
    [".gif", pytest.param(".mp4", marks=pytest.mark.skipif(not HAS_FFMPEG, reason="imageio-ffmpeg missing"))],
)


@SUFFIXES
def test_video_has_one_frame_per_state(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"run{suffix}"
    states = make_states(5)
    with VideoWriter(target, fps=4, config=SMALL) as video:
        for state in states:
            video(state)
    assert video.frames_written == len(states)
    frames = read_frames(target)
    assert len(frames) == len(states)
    assert {frame.shape for frame in frames} == {SMALL_SHAPE}
    assert sorted(tmp_path.iterdir()) == [target]
    # The movie shows the rendered views in order: each decoded frame is closest to its own state's
    # rendering (GIF palettes and H.264 are lossy, so no exact comparison).
    view = TrackingView(SMALL)
    rendered = np.stack([view.render_rgb(state) for state in states]).astype(np.float64)
    errors = np.abs(np.stack(frames)[:, None].astype(np.float64) - rendered[None]).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(errors.argmin(axis=1), np.arange(len(states)))


@pytest.mark.skipif(not HAS_FFMPEG, reason="imageio-ffmpeg missing")
def test_mp4_frames_are_padded_to_even_sides(tmp_path: Path) -> None:
    odd = ViewConfig(figsize=(4.04, 1.48), dpi=25)
    assert render_frame(make_states(1)[0], odd).shape == (37, 101, 3)
    target = tmp_path / "odd.mp4"
    write_video(make_states(3), target, config=odd)
    frames = read_frames(target)
    assert len(frames) == 3
    height, width = frames[0].shape[:2]
    assert height % 2 == 0 and width % 2 == 0


def test_gif_timing_follows_fps(tmp_path: Path) -> None:
    target = tmp_path / "run.gif"
    write_video(make_states(3), target, fps=5, config=SMALL)
    assert iio.immeta(target, index=0)["duration"] == pytest.approx(200)


def test_tracker_run_writes_one_frame_per_movie_frame(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    movie = drifting_nuclei(velocity=(1.0, 2.0), n=3, frames=5, height=64, width=64, seed=1)
    initial = measure_detections(movie.labels[0], 0)
    target = tmp_path / "cf.gif"
    with VideoWriter(target, fps=5, config=SMALL) as video:
        CFTracker(RawExtractor()).track(list(movie.images), initial, on_frame=video, selected=1)
    frames = read_frames(target)
    assert len(frames) == len(movie.images)
    assert {frame.shape for frame in frames} == {SMALL_SHAPE}


def test_existing_file_is_refused_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "run.gif"
    target.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="--overwrite"):
        VideoWriter(target, config=SMALL)
    assert target.read_bytes() == b"keep me"
    write_video(make_states(2), target, overwrite=True, config=SMALL)
    assert len(read_frames(target)) == 2
    assert sorted(tmp_path.iterdir()) == [target]


@SUFFIXES
def test_error_inside_the_block_leaves_no_files(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"run{suffix}"
    with pytest.raises(RuntimeError, match="tracker failed"), VideoWriter(target, config=SMALL) as video:
        for state in make_states(3):
            video(state)
        if suffix == ".mp4":  # ffmpeg streams into the temporary file (Pillow writes a GIF only on close)
            assert video.temp_path.exists() and video.temp_path.parent == tmp_path
        raise RuntimeError("tracker failed")
    assert list(tmp_path.iterdir()) == []


def test_error_keeps_an_existing_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "run.gif"
    target.write_bytes(b"previous run")
    with pytest.raises(RuntimeError), VideoWriter(target, overwrite=True, config=SMALL) as video:
        video(make_states(1)[0])
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"previous run"
    assert sorted(tmp_path.iterdir()) == [target]


def test_no_frames_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "empty.gif"
    with VideoWriter(target, config=SMALL) as video:
        pass
    assert video.close() is None
    assert list(tmp_path.iterdir()) == []


def test_closed_writer_refuses_frames(tmp_path: Path) -> None:
    target = tmp_path / "run.gif"
    video = VideoWriter(target, config=SMALL)
    video(make_states(1)[0])
    assert video.close() == target
    with pytest.raises(ValueError, match="closed"):
        video(make_states(1)[0])


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("run.avi", {}, "must end in"),
        ("missing/run.gif", {}, "does not exist"),
        ("run.gif", {"fps": 0}, "fps"),
        ("run.gif", {"fps": float("nan")}, "fps"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VideoWriter(tmp_path / name, **kwargs)


def test_mp4_without_ffmpeg_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes find_spec report it missing
    with pytest.raises(ValueError, match=r"celltrack\[video\]"):
        VideoWriter(tmp_path / "run.mp4")
    VideoWriter(tmp_path / "run.gif").abort()  # GIF needs no ffmpeg
    assert list(tmp_path.iterdir()) == []


def test_rgb_frames_must_keep_one_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differs"), VideoWriter(tmp_path / "run.gif") as video:
        video.write_rgb(np.zeros((10, 12, 3), np.uint8))
        video.write_rgb(np.zeros((10, 14, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"), VideoWriter(tmp_path / "run.gif") as video:
        video.write_rgb(np.zeros((10, 12), np.float32))
    assert list(tmp_path.iterdir()) == []
