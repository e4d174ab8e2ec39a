"""Write the tracking view to a movie (``celltrack cf-track --save-video FILE.mp4|.gif``).

:class:`VideoWriter` renders every :class:`~celltrack.cftrack.FrameState` with :class:`TrackingView` on
an Agg canvas (no pyplot, no GUI) and appends it to an imageio writer. The movie goes to a temporary
file beside the target and replaces it only when closed successfully, so an interrupted run never leaves
a truncated movie under the requested name.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from celltrack.viz.live import TrackingView, ViewConfig

if TYPE_CHECKING:
    from celltrack.cftrack import FrameState

logger = logging.getLogger(__name__)

__all__ = ["VIDEO_SUFFIXES", "VideoWriter", "write_video"]

VIDEO_SUFFIXES = (".gif", ".mp4")


class VideoWriter:
    """Movie of the tracking view, one frame per tracker state; an ``on_frame`` callback.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; ``.gif`` (Pillow) or ``.mp4`` (H.264 through ffmpeg, needs ``celltrack[video]``).
    fps : float
        Frames per second of the movie.
    overwrite : bool
        Replace an existing file at ``path``.
    config : ViewConfig, optional
        Look and pixel size of the frames (``figsize × dpi``, constant for the whole movie).

    Raises
    ------
    ValueError
        Unknown suffix, missing folder, existing file without ``overwrite``, mp4 without imageio-ffmpeg,
        or a non-positive ``fps``.

    Notes
    -----
    Use as a context manager: leaving the block normally finalises the file, an exception discards it.
    Without ``with``, call :meth:`close` (or :meth:`abort`). GIF frames are kept in memory until closing.

    Examples
    --------
    >>> with VideoWriter("run.mp4", fps=5) as video:  # doctest: +SKIP
    ...     CFTracker(extractor).track(frames, initial, on_frame=video)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float = 5.0,
        overwrite: bool = False,
        config: ViewConfig | None = None,
    ) -> None:
        target = Path(path)
        suffix = target.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise ValueError(f"video file {target} must end in one of {', '.join(VIDEO_SUFFIXES)}")
        if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if not target.parent.is_dir():
            raise ValueError(f"folder {target.parent} for the video does not exist; create it first")
        if target.is_dir():
            raise ValueError(f"video path {target} is a folder; give a file name ending in {suffix}")
        if target.exists() and not overwrite:
            raise ValueError(f"{target} already exists; pass --overwrite (overwrite=True) to replace it")
        if suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
            raise ValueError(
                f"writing {target} needs ffmpeg: pip install 'celltrack[video]' (imageio-ffmpeg), "
                "or save a .gif instead"
            )
        self.path = target
        self.fps = float(fps)
        self.overwrite = overwrite
        self.suffix = suffix
        self._view = TrackingView(config)
        # Same folder as the target so os.replace is an atomic rename; the suffix tells imageio the format.
        self._temp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.partial{suffix}")
        self._writer: Any = None
        self._shape: tuple[int, ...] | None = None
        self._frames = 0
        self._finished = False

    @property
    def frames_written(self) -> int:
        """Frames appended so far."""
        return self._frames

    @property
    def temp_path(self) -> Path:
        """Where the movie is written until :meth:`close` moves it to :attr:`path`."""
        return self._temp

    def _open(self) -> Any:
        if self.suffix == ".gif":
            import imageio.v3 as iio

            return iio.imopen(self._temp, "w", plugin="pillow", extension=".gif")
        import imageio.v2 as iio2

        return iio2.get_writer(
            self._temp,
            format="FFMPEG",
            mode="I",
            fps=self.fps,
            codec="libx264",
            pixelformat="yuv420p",
            # Frames are padded to even sizes below; stop imageio from resizing to multiples of 16.
            macro_block_size=2,
            ffmpeg_log_level="error",
        )

    def write_rgb(self, image: np.ndarray) -> None:
        """Append one already rendered frame, (H, W, 3) uint8; all frames must share one shape."""
        if self._finished:
            raise ValueError(f"video {self.path} is already closed")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"video frames must be (H, W, 3) uint8, got shape {image.shape} {image.dtype}")
        if self.suffix == ".mp4" and (image.shape[0] % 2 or image.shape[1] % 2):
            # yuv420p halves the chroma resolution, so H.264 needs even sides.
            image = np.pad(image, ((0, image.shape[0] % 2), (0, image.shape[1] % 2), (0, 0)), mode="edge")
        if self._shape is None:
            self._shape = image.shape
        elif image.shape != self._shape:
            raise ValueError(f"video frame shape {image.shape} differs from the first frame's {self._shape}")
        if self._writer is None:
            self._writer = self._open()
        if self.suffix == ".gif":
            self._writer.write(image, duration=1000.0 / self.fps, loop=0, is_batch=False)
        else:
            self._writer.append_data(image)
        self._frames += 1

    def __call__(self, state: FrameState) -> None:
        """Render one tracker state and append it."""
        self.write_rgb(self._view.render_rgb(state))

    def close(self) -> Path | None:
        """Finish the movie and move it to :attr:`path`.

        Returns
        -------
        pathlib.Path or None
            The written file, or None when no frame was appended (nothing is written then).
        """
        if self._finished:
            return self.path if self._frames else None
        self._finished = True
        if self._writer is None:
            logger.warning("no frames were rendered; %s not written", self.path)
            return None
        try:
            self._writer.close()
            if self.path.exists() and not self.overwrite:
                raise ValueError(f"{self.path} appeared while writing; pass --overwrite to replace it")
            os.replace(self._temp, self.path)
        finally:
            self._temp.unlink(missing_ok=True)
        logger.info("wrote %d frames to %s", self._frames, self.path)
        return self.path

    def abort(self) -> None:
        """Discard the movie: close the writer and delete the temporary file; :attr:`path` is untouched."""
        self._finished = True
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:  # the partial file is discarded anyway; keep the caller's error in front
            logger.debug("closing the partial video %s failed", self._temp, exc_info=True)
        finally:
            self._writer = None
            self._temp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    states: Iterable[FrameState],
    path: str | os.PathLike[str],
    fps: float = 5.0,
    overwrite: bool = False,
    config: ViewConfig | None = None,
) -> Path | None:
    """Functional wrapper: render every state into one movie (see :class:`VideoWriter`)."""
    with VideoWriter(path, fps=fps, overwrite=overwrite, config=config) as video:
        for state in states:
            video(state)
    return video.path if video.frames_written else None
