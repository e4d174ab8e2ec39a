"""napari reader: a result folder (``NN_RES`` with ``res_track.txt``) as a Labels and a Tracks layer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from celltrack.viz.napari_view import LayerData, napari_layers

#: What makes a folder a result napari can open with this reader.
RESULT_MARKER = "res_track.txt"


def is_result_folder(path: str | Path) -> bool:
    """A folder holding a CTC track table and masks: ``res_track.txt`` + ``maskTTT.tif``."""
    path = Path(path)
    return (path / RESULT_MARKER).is_file() and any(path.glob("mask*.tif"))


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader hook: :func:`read_result_folder` for a result folder, None for anything else.

    Parameters
    ----------
    path : str or list of str
        What napari was asked to open (one path, or several: only a single folder is taken).
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_result_folder if is_result_folder(path) else None


def read_result_folder(path: str | list[str]) -> list[LayerData]:
    """The masks of a result folder as a Labels layer and its lineage as a Tracks layer.

    Parameters
    ----------
    path : str or list of str
        The result folder (``maskTTT.tif`` + ``res_track.txt``, optionally ``tracks.csv``).

    Returns
    -------
    list of LayerData
        ``(masks (T, Y, X) read lazily, kwargs, "labels")`` and ``(data (N, 4) rows track_id, t,
        y, x, kwargs with graph={child: [parent]}, "tracks")``.
    """
    if isinstance(path, list):
        (path,) = path
    return napari_layers(None, path)
