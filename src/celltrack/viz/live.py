"""The study's Figure 1 as a live view: whole frame with search windows, close-up, response map.

:class:`TrackingView` renders one :class:`~celltrack.cftrack.FrameState` into a matplotlib figure of
three panels and reuses its artists between frames (``set_data``), so following a movie only moves
pixels and boxes. Two consumers wrap it, both usable as the tracker's ``on_frame`` callback:
:class:`LiveViewer` (an interactive window) and :class:`celltrack.viz.video.VideoWriter` (a movie file).

matplotlib is imported inside the functions, so ``import celltrack.viz`` stays cheap.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from celltrack.cftrack import FrameState

logger = logging.getLogger(__name__)

__all__ = ["LiveViewer", "TrackingView", "ViewConfig", "crop_window", "render_frame", "stretch_contrast"]

# Built-in backends that draw into a buffer or file only; a GUI canvas declares its framework instead.
_NON_INTERACTIVE_BACKENDS = frozenset({"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"})
# Percentiles of a big frame are estimated on a strided sample of about this many pixels.
_PERCENTILE_SAMPLE = 250_000


class ViewConfig(BaseModel):
    """Look of the tracking view.

    Attributes
    ----------
    figsize : tuple of float
        Figure (width, height) in inches; with ``dpi`` it fixes the rendered size in pixels.
    dpi : int
        Dots per inch of rendered frames (the default gives 960 × 320 px, a multiple of 16 as video
        encoders prefer).
    percentiles : tuple of float
        Display range of the raw frame (lower, upper percentile): robust to the camera offset and hot pixels.
    frame_cmap, response_cmap : str
        Colour maps of the frame (and close-up) and of the response map.
    window_colour, selected_colour : str
        Edge colour of the search windows and of the selected cell's window.
    line_width : float
        Width of the window boxes (points).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    figsize: tuple[float, float] = Field((12.0, 4.0), description="inches (width, height)")
    dpi: int = Field(80, ge=10, le=600)
    percentiles: tuple[float, float] = Field((1.0, 99.8), description="display range of the frame")
    frame_cmap: str = "gray"
    response_cmap: str = "viridis"
    window_colour: str = "#ffd21f"
    selected_colour: str = "#ff3b30"
    line_width: float = Field(0.8, gt=0, description="points")

    @model_validator(mode="after")
    def _check(self) -> ViewConfig:
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        if min(self.figsize) <= 0:
            raise ValueError(f"figsize must be positive inches, got {self.figsize}")
        return self


def stretch_contrast(frame: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.8)) -> np.ndarray:
    """Map a raw frame linearly to [0, 1] between two of its percentiles.

    Parameters
    ----------
    frame : numpy.ndarray, shape (Y, X)
        Raw frame, any real dtype (e.g. uint16 with a camera offset).
    percentiles : tuple of float
        Percentiles mapped to 0 and 1; values beyond are clipped.

    Returns
    -------
    numpy.ndarray of float32, shape (Y, X)
    """
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ValueError(f"frame must be 2-D (Y, X), got shape {frame.shape}")
    if not (np.issubdtype(frame.dtype, np.number) or frame.dtype == bool) or np.iscomplexobj(frame):
        raise TypeError(f"frame must hold real numbers, got dtype {frame.dtype}")
    image = frame.astype(np.float32)
    stride = max(1, math.isqrt(image.size // _PERCENTILE_SAMPLE))
    sample = image[::stride, ::stride]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.zeros_like(image)
    low, high = (np.float32(value) for value in np.percentile(sample, percentiles))
    if high <= low:
        high = low + np.float32(1.0)
    return np.clip((np.nan_to_num(image, nan=low) - low) / (high - low), 0.0, 1.0).astype(np.float32)


def crop_window(image: np.ndarray, centre: tuple[float, float], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Square window around a centre, zero-padded where it leaves the image.

    The origin follows the tracker's convention ``floor(centre + 0.5) - size // 2``, so window pixel
    ``(size // 2, size // 2)`` is the rounded centre, as in the response map.

    Parameters
    ----------
    image : numpy.ndarray, shape (Y, X)
    centre : tuple of float
        ``(y, x)`` in pixels.
    size : int
        Window side (px).

    Returns
    -------
    window : numpy.ndarray, shape (size, size)
        Same dtype as ``image``.
    origin : numpy.ndarray of int, shape (2,)
        ``(y, x)`` of the window's top-left pixel in the image.
    """
    origin = np.floor(np.asarray(centre, np.float64) + 0.5).astype(np.int64) - size // 2
    window = np.zeros((size, size), image.dtype)
    top, left = int(origin[0]), int(origin[1])
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, image.shape[0]), min(left + size, image.shape[1])
    if y1 > y0 and x1 > x0:
        window[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return window, origin


def _masked_blank(size: int) -> np.ma.MaskedArray:
    # Zeros under the mask: matplotlib's colour lookup overflows on masked_all's huge fill value.
    return np.ma.array(np.zeros((size, size), np.float32), mask=True)


def _format(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g}"


class TrackingView:
    """Three panels rendering one tracker state: frame with windows, close-up, response map.

    Parameters
    ----------
    config : ViewConfig, optional
    figure : matplotlib.figure.Figure, optional
        Figure to draw into (e.g. a pyplot window). By default a new figure on an Agg canvas: no
        pyplot, no GUI, size fixed by ``config.figsize`` and ``config.dpi``.

    Notes
    -----
    Artists are created on the first :meth:`render` and updated afterwards; a change of frame or window
    size only changes their extents.
    """

    def __init__(self, config: ViewConfig | None = None, figure: Figure | None = None) -> None:
        self.config = config if config is not None else ViewConfig()
        if figure is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            figure = Figure(figsize=self.config.figsize, dpi=self.config.dpi)
            FigureCanvasAgg(figure)
        self._figure = figure
        self._artists: dict[str, Any] | None = None

    @property
    def figure(self) -> Figure:
        """The figure drawn into."""
        return self._figure

    def _build(self) -> dict[str, Any]:
        from matplotlib.collections import PolyCollection
        from matplotlib.patches import Rectangle

        cfg, fig = self.config, self._figure
        # Fixed axes rectangles (no tight/constrained layout): every frame renders at the same place.
        ax_frame = fig.add_axes((0.01, 0.03, 0.46, 0.82))
        ax_close = fig.add_axes((0.50, 0.03, 0.21, 0.82))
        ax_response = fig.add_axes((0.74, 0.03, 0.21, 0.82))
        ax_colourbar = fig.add_axes((0.955, 0.10, 0.012, 0.68))
        for ax in (ax_frame, ax_close, ax_response):
            ax.set_xticks([])
            ax.set_yticks([])
        blank = np.zeros((2, 2), np.float32)
        frame_image = ax_frame.imshow(blank, cmap=cfg.frame_cmap, vmin=0, vmax=1, interpolation="antialiased")
        windows = PolyCollection(
            [], facecolors="none", edgecolors=cfg.window_colour, linewidths=cfg.line_width, closed=True
        )
        ax_frame.add_collection(windows)
        selected_box = Rectangle(
            (0, 0), 1, 1, fill=False, edgecolor=cfg.selected_colour, linewidth=2 * cfg.line_width, zorder=3
        )
        selected_box.set_visible(False)
        ax_frame.add_patch(selected_box)
        frame_title = ax_frame.set_title("", fontsize=9)
        close_image = ax_close.imshow(blank, cmap=cfg.frame_cmap, vmin=0, vmax=1, interpolation="nearest")
        (close_marker,) = ax_close.plot([], [], "+", color=cfg.selected_colour, markersize=12, mew=1.5)
        for spine in ax_close.spines.values():
            spine.set_edgecolor(cfg.selected_colour)
            spine.set_linewidth(2)
        close_title = ax_close.set_title("", fontsize=9)
        response_image = ax_response.imshow(
            _masked_blank(2), cmap=cfg.response_cmap, vmin=0, vmax=1, interpolation="nearest"
        )
        (response_centre,) = ax_response.plot([], [], "+", color="white", markersize=10, mew=1)
        (response_peak,) = ax_response.plot([], [], "x", color=cfg.selected_colour, markersize=8, mew=1.5)
        response_title = ax_response.set_title("", fontsize=9)
        fig.colorbar(response_image, cax=ax_colourbar)
        ax_colourbar.tick_params(labelsize=7)
        suptitle = fig.suptitle("", fontsize=11, y=0.985)
        return {
            "ax_frame": ax_frame,
            "ax_close": ax_close,
            "ax_response": ax_response,
            "frame_image": frame_image,
            "windows": windows,
            "selected_box": selected_box,
            "frame_title": frame_title,
            "close_image": close_image,
            "close_marker": close_marker,
            "close_title": close_title,
            "response_image": response_image,
            "response_centre": response_centre,
            "response_peak": response_peak,
            "response_title": response_title,
            "suptitle": suptitle,
        }

    @staticmethod
    def _show(ax: Any, image_artist: Any, data: np.ndarray) -> None:
        """Set an image's data, adjusting extent and limits only when its shape changed."""
        height, width = data.shape[:2]
        extent = (-0.5, width - 0.5, height - 0.5, -0.5)
        image_artist.set_data(data)
        if tuple(image_artist.get_extent()) != extent:
            image_artist.set_extent(extent)
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])

    def render(self, state: FrameState) -> Figure:
        """Draw one tracker state into the figure (the canvas is not redrawn here).

        Parameters
        ----------
        state : FrameState
            ``frame`` (Y, X), ``positions`` (N, 2), ``active`` (N,), ``peak``/``psr`` (N,), ``window``,
            ``response`` (window, window) or None, ``selected``.

        Returns
        -------
        matplotlib.figure.Figure
        """
        if self._artists is None:
            self._artists = self._build()
        art = self._artists
        display = stretch_contrast(state.frame, self.config.percentiles)
        positions = np.asarray(state.positions, np.float64).reshape(-1, 2)
        n = len(positions)
        active = np.asarray(state.active, bool).reshape(-1)
        if active.shape != (n,):
            raise ValueError(f"active has shape {active.shape}, expected ({n},) to match positions")
        size = int(state.window)
        if size < 1:
            raise ValueError(f"window must be a positive side in pixels, got {state.window}")
        shown = active & np.isfinite(positions).all(axis=1)
        selected = int(state.selected)
        has_selection = 0 <= selected < n and bool(shown[selected])

        self._show(art["ax_frame"], art["frame_image"], display)
        origins = np.floor(positions[shown] + 0.5) - size // 2 - 0.5  # pixel edges, (y, x)
        corners = np.array([[0, 0], [0, size], [size, size], [size, 0]], np.float64)  # (x, y) offsets
        art["windows"].set_verts(origins[:, None, ::-1] + corners[None])
        box = art["selected_box"]
        box.set_visible(has_selection)
        if has_selection:
            top, left = np.floor(positions[selected] + 0.5) - size // 2 - 0.5
            box.set_xy((left, top))
            box.set_width(size)
            box.set_height(size)
        art["frame_title"].set_text(f"{display.shape[1]} × {display.shape[0]} px, window {size} px")

        if has_selection:
            close, origin = crop_window(display, tuple(positions[selected]), size)
            offset = positions[selected] - origin
            art["close_marker"].set_data([offset[1]], [offset[0]])
            y, x = positions[selected]
            art["close_title"].set_text(f"cell {selected} at (y {y:.1f}, x {x:.1f})")
        else:
            close = np.zeros((size, size), np.float32)
            art["close_marker"].set_data([], [])
            art["close_title"].set_text(f"cell {selected}: lost" if 0 <= selected < n else "no cell selected")
        self._show(art["ax_close"], art["close_image"], close)

        self._render_response(art, state, selected if 0 <= selected < n else None, size)
        art["suptitle"].set_text(f"frame {state.t}    {int(shown.sum())}/{n} cells tracked")
        return self._figure

    def _render_response(
        self, art: dict[str, Any], state: FrameState, selected: int | None, size: int
    ) -> None:
        response = None if state.response is None else np.asarray(state.response, np.float32)
        if response is not None and (response.ndim != 2 or response.size == 0):
            raise ValueError(f"response must be a 2-D (window, window) map, got shape {response.shape}")
        image = art["response_image"]
        if response is None or not np.isfinite(response).any():
            self._show(art["ax_response"], image, _masked_blank(size))
            image.set_clim(0.0, 1.0)
            art["response_peak"].set_data([], [])
            art["response_centre"].set_data([size // 2], [size // 2])
            art["response_title"].set_text("response: none")
            return
        low, high = float(np.nanmin(response)), float(np.nanmax(response))
        finite = np.isfinite(response)
        self._show(art["ax_response"], image, np.ma.array(np.where(finite, response, low), mask=~finite))
        image.set_clim(low, high if high > low else low + 1e-6)
        peak_y, peak_x = np.unravel_index(np.nanargmax(response), response.shape)
        art["response_peak"].set_data([peak_x], [peak_y])
        art["response_centre"].set_data([response.shape[1] // 2], [response.shape[0] // 2])
        peak = state.peak[selected] if selected is not None else np.nan
        psr = state.psr[selected] if selected is not None else np.nan
        art["response_title"].set_text(f"response  peak {_format(float(peak))}  PSR {_format(float(psr))}")

    def to_rgb(self) -> np.ndarray:
        """Draw the canvas and return its pixels.

        Returns
        -------
        numpy.ndarray of uint8, shape (H, W, 3)
            ``H, W = figsize × dpi`` (rounded), constant between frames.
        """
        canvas = self._figure.canvas
        if not hasattr(canvas, "buffer_rgba"):
            raise TypeError(f"{type(canvas).__name__} cannot return pixels; use an Agg-based canvas")
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def render_rgb(self, state: FrameState) -> np.ndarray:
        """:meth:`render` then :meth:`to_rgb`: one video frame, (H, W, 3) uint8."""
        self.render(state)
        return self.to_rgb()


def render_frame(state: FrameState, config: ViewConfig | None = None) -> np.ndarray:
    """Functional wrapper: one state as an (H, W, 3) uint8 image (``TrackingView(config).render_rgb``)."""
    return TrackingView(config).render_rgb(state)


class LiveViewer:
    """Interactive window following the tracker (``celltrack cf-track --live``); an ``on_frame`` callback.

    Parameters
    ----------
    config : ViewConfig, optional
    pause : float
        Seconds the GUI event loop runs after each frame (lets the window repaint and respond).

    Raises
    ------
    ValueError
        If matplotlib has no interactive (GUI) backend, e.g. on a machine without a display.

    Notes
    -----
    Closing the window does not stop tracking; later frames are simply not shown.
    """

    def __init__(self, config: ViewConfig | None = None, pause: float = 0.001) -> None:
        if not (pause > 0 and math.isfinite(pause)):
            raise ValueError(f"pause must be a positive number of seconds, got {pause}")
        import matplotlib
        import matplotlib.pyplot as plt

        backend = str(matplotlib.get_backend()).lower()
        hint = (
            "the live view needs an interactive matplotlib backend and a display; "
            "set MPLBACKEND (e.g. QtAgg or TkAgg) on a machine with a display, "
            "or write the same view to a file with --save-video FILE.mp4"
        )
        if backend in _NON_INTERACTIVE_BACKENDS or backend.endswith("backend_inline"):
            requested = os.environ.get("MPLBACKEND", "")
            fallback = (
                f" (MPLBACKEND={requested} could not start, no display?)"
                if requested.lower() not in ("", backend)
                else ""
            )
            raise ValueError(
                f"matplotlib backend {backend!r} is non-interactive (headless){fallback}: {hint}"
            )
        self.config = config if config is not None else ViewConfig()
        self.pause = float(pause)
        try:
            figure = plt.figure(figsize=self.config.figsize)
        except Exception as error:  # GUI toolkits raise their own types (TclError, ImportError, ...)
            raise ValueError(f"cannot open a window with backend {backend!r} ({error}): {hint}") from error
        if getattr(type(figure.canvas), "required_interactive_framework", None) is None:
            plt.close(figure)
            raise ValueError(f"matplotlib backend {backend!r} opened no window: {hint}")
        plt.ion()
        self._plt = plt
        self._view = TrackingView(self.config, figure=figure)
        self._closed = False

    @property
    def figure(self) -> Figure:
        """The window's figure."""
        return self._view.figure

    @property
    def is_open(self) -> bool:
        """Whether the window is still shown."""
        return not self._closed and self._plt.fignum_exists(self.figure.number)

    def __call__(self, state: FrameState) -> None:
        """Show one tracker state and let the window repaint."""
        if not self.is_open:
            return
        self._view.render(state)
        self.figure.canvas.draw_idle()
        self._plt.pause(self.pause)

    def close(self) -> None:
        """Close the window."""
        if not self._closed:
            self._closed = True
            self._plt.close(self.figure)

    def __enter__(self) -> LiveViewer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
