"""napari view of a movie and its tracking result: image, masks and the lineage as a Tracks layer.

napari is an optional extra (``pip install "celltrack[napari]"``) imported only by
:func:`show_in_napari`. Everything napari needs is prepared by :func:`napari_layers` as plain
napari *LayerData* tuples ``(data, kwargs, layer_type)``, usable without napari (tests, plugins,
``viewer._add_layer_from_data``). Frames are read lazily through dask, one frame per chunk, so
a long movie is never loaded whole.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from celltrack.io import ImageSequence, open_sequence
from celltrack.io.export import read_result

if TYPE_CHECKING:
    import dask.array

logger = logging.getLogger(__name__)

#: ``(data, kwargs, layer_type)``: napari's LayerData tuple.
LayerData = tuple[Any, dict[str, Any], str]

NAPARI_INSTALL_HINT = 'pip install "celltrack[napari]"'


class NapariNotInstalledError(ImportError, ValueError):
    """napari is missing; the message says how to install it (a ValueError for one-line CLI errors)."""


def napari_available() -> bool:
    """Whether napari can be imported (without importing it)."""
    return importlib.util.find_spec("napari") is not None


def require_napari() -> Any:
    """Import napari, or raise :class:`NapariNotInstalledError` with the install command."""
    if not napari_available():
        raise NapariNotInstalledError(
            f"napari is not installed; install the viewer with: {NAPARI_INSTALL_HINT}"
        )
    try:
        return importlib.import_module("napari")
    except ImportError as err:
        raise NapariNotInstalledError(
            f"napari is installed but cannot be imported ({err}); reinstall it with: {NAPARI_INSTALL_HINT}"
        ) from err


def lazy_frames(sequence: ImageSequence) -> dask.array.Array:
    """A dask array ``(T, Y, X)`` that reads one frame of ``sequence`` per chunk, on demand.

    Parameters
    ----------
    sequence : ImageSequence

    Returns
    -------
    dask.array.Array, shape (T, Y, X), dtype ``sequence.dtype``
    """
    import dask
    import dask.array as da

    # Explicit keys: dask would otherwise tokenize the sequence object (its reader closure) per frame.
    key = f"celltrack-frames-{uuid.uuid4().hex}"
    frames = [
        da.from_delayed(
            dask.delayed(_read_frame)(sequence, t, dask_key_name=f"{key}-read-{t}"),
            shape=sequence.frame_shape,
            dtype=sequence.dtype,
            name=f"{key}-{t}",
        )
        for t in range(len(sequence))
    ]
    if not frames:
        return da.zeros((0, *sequence.frame_shape), dtype=sequence.dtype)
    return da.stack(frames)


def _read_frame(sequence: ImageSequence, t: int) -> np.ndarray:
    return sequence[t]


def contrast_limits(frame: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.8)) -> list[float]:
    """Display range of a frame from its percentiles (robust to camera offsets and hot pixels).

    Parameters
    ----------
    frame : numpy.ndarray, shape (Y, X)
    percentiles : tuple of float
        Low and high percentile (0-100).

    Returns
    -------
    list of float
        ``[low, high]`` with ``high > low``.
    """
    low, high = (float(v) for v in np.percentile(frame, percentiles))
    if high <= low:
        high = low + 1.0
    return [low, high]


def napari_layers(
    images: ImageSequence | str | Path | None,
    res_dir: str | Path | None = None,
    tail_length: int = 30,
) -> list[LayerData]:
    """napari layers for a movie and (optionally) its tracking result.

    Parameters
    ----------
    images : ImageSequence, path or None
        The raw movie (CTC folder, multi-page TIFF or zarr); None for a result without images.
    res_dir : str or pathlib.Path, optional
        Result folder (``maskTTT.tif`` + ``res_track.txt``, optionally ``tracks.csv``).
    tail_length : int
        Frames of history drawn behind each track head.

    Returns
    -------
    list of LayerData
        In drawing order: ``image`` (lazy dask array (T, Y, X)), ``labels`` (lazy result
        masks (T, Y, X)) and ``tracks`` (data (N, 4) rows ``track_id, t, y, x``, with
        ``graph={child_track: [parent_track]}`` and per-vertex ``features``).

    Raises
    ------
    ValueError
        Unreadable inputs, neither images nor a result, or images and masks of different
        shape or length.
    """
    if images is None and res_dir is None:
        raise ValueError("napari_layers needs a movie, a result folder or both")
    layers: list[LayerData] = []
    sequence: ImageSequence | None = None
    if images is not None:
        sequence = images if isinstance(images, ImageSequence) else open_sequence(images)
        kwargs: dict[str, Any] = {"name": Path(sequence.source).name or "images", "colormap": "gray"}
        if len(sequence):
            kwargs["contrast_limits"] = contrast_limits(sequence[0])
        layers.append((lazy_frames(sequence), kwargs, "image"))
    if res_dir is None:
        return layers
    result = read_result(res_dir)
    if result.frame_shape is not None:
        masks = open_sequence(result.path, prefix="mask")
        if sequence is not None and (len(masks), masks.frame_shape) != (len(sequence), sequence.frame_shape):
            raise ValueError(
                f"{result.path}: {len(masks)} masks of {masks.frame_shape} do not match the movie's "
                f"{len(sequence)} frames of {sequence.frame_shape}; pass the movie this result was tracked on"
            )
        layers.append((lazy_frames(masks), {"name": f"{result.path.name} masks", "opacity": 0.5}, "labels"))
    data, graph = result.graph.to_napari()
    if len(data):
        table = result.graph.to_table()
        features = pd.DataFrame(
            {
                "track_id": table["track_id"].to_numpy(),
                "parent_track_id": table["parent_track_id"].to_numpy(),
                "area": table["area"].to_numpy(),
            }
        )
        track_kwargs = {
            "name": f"{result.path.name} tracks",
            "graph": graph,
            "features": features,
            "tail_length": int(tail_length),
            "tail_width": 2,
        }
        layers.append((data, track_kwargs, "tracks"))
    else:
        logger.warning("%s: the result has no detections; no tracks layer", result.path)
    return layers


def show_in_napari(
    images: ImageSequence | str | Path | None,
    res_dir: str | Path | None = None,
    *,
    tail_length: int = 30,
    viewer: Any = None,
    block: bool = True,
) -> Any:
    """Open (or fill) a napari viewer with :func:`napari_layers`.

    Parameters
    ----------
    images, res_dir, tail_length
        See :func:`napari_layers`.
    viewer : napari.Viewer, optional
        Add the layers to this viewer instead of a new one.
    block : bool
        Run the napari event loop until the window is closed (False in notebooks/scripts that
        run their own loop).

    Returns
    -------
    napari.Viewer

    Raises
    ------
    NapariNotInstalledError
        Without napari (checked before any input is read).
    """
    napari = require_napari()
    layers = napari_layers(images, res_dir, tail_length)
    if viewer is None:
        title = "celltrack" + (f" — {Path(res_dir).name}" if res_dir is not None else "")
        viewer = napari.Viewer(title=title)
    for data, kwargs, layer_type in layers:
        getattr(viewer, f"add_{layer_type}")(data, **kwargs)
    if block:
        napari.run()
    return viewer
