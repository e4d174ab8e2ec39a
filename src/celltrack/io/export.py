"""Tracks for other tools: TrackMate XML and CSV, GEFF graphs, plain tables; and result folders read back.

A result folder (``NN_RES``) holds CTC ``maskTTT.tif`` + ``res_track.txt`` and, when celltrack
wrote it, ``tracks.csv`` (one row per detection) and ``celltrack.json`` (provenance).
:func:`read_result` turns any such folder into a :class:`~celltrack.graph.TrackGraph`;
the writers below turn a graph into files that TrackMate (Fiji), GEFF readers (napari
plugins, motile-tracker, TrackMate's GEFF importer ...) or pandas open directly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from celltrack import __version__
from celltrack.graph import TrackGraph, lineage_ids, tracklet_ids
from celltrack.io.atomic import atomic_output_dir, check_output
from celltrack.io.calibration import Calibration, read_calibration
from celltrack.io.ctc import detections_from_sequence, read_track_table
from celltrack.io.provenance import RECORD_NAME
from celltrack.io.sequence import open_sequence
from celltrack.io.tables import read_table, write_table
from celltrack.io.trackmate import (
    TrackMateImage,
    write_trackmate_csv,
    write_trackmate_xml,
)

logger = logging.getLogger(__name__)

#: Formats understood by :func:`export_result` (all but ``trackmate-xml`` also by :func:`export_tracks`).
EXPORT_FORMATS: tuple[str, ...] = ("trackmate-xml", "trackmate", "geff", "csv", "parquet")
#: Track tables celltrack writes into a result folder, in order of preference.
TRACK_TABLE_NAMES: tuple[str, ...] = ("tracks.parquet", "tracks.csv")


# ---------------------------------------------------------------------- reading a result folder
@dataclass
class ResultFolder:
    """A tracking result read back from disk.

    Attributes
    ----------
    path : pathlib.Path
        The result folder.
    graph : TrackGraph
        Detections and links (from ``tracks.csv`` when present, else rebuilt from the masks).
    record : dict or None
        The parsed ``celltrack.json`` run record, if the folder has a readable one.
    n_frames : int
        Number of ``maskTTT.tif`` frames (``graph.n_frames`` when the folder has no masks).
    frame_shape : tuple of int or None
        ``(Y, X)`` of the masks, None without masks.
    """

    path: Path
    graph: TrackGraph
    record: dict[str, Any] | None
    n_frames: int
    frame_shape: tuple[int, int] | None


def read_run_record(res_dir: str | Path) -> dict[str, Any] | None:
    """The ``celltrack.json`` of a result folder, or None when absent or unreadable (logged)."""
    path = Path(res_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        logger.warning("%s: cannot read the run record (%s); ignoring it", path, err)
        return None
    if not isinstance(record, dict):
        logger.warning("%s: the run record is not a JSON object; ignoring it", path)
        return None
    return record


def read_result(res_dir: str | Path) -> ResultFolder:
    """Read a result folder into a :class:`ResultFolder`.

    Parameters
    ----------
    res_dir : str or pathlib.Path
        Folder with ``maskTTT.tif`` + ``res_track.txt`` and optionally ``tracks.csv`` /
        ``tracks.parquet`` and ``celltrack.json``.

    Returns
    -------
    ResultFolder

    Raises
    ------
    ValueError
        Missing folder; neither a track table nor masks + ``res_track.txt``; invalid tables.
    """
    res = Path(res_dir)
    if not res.is_dir():
        raise ValueError(f"{res}: result folder not found; pass the NN_RES folder of a tracking run")
    has_masks = any(res.glob("mask*.tif"))
    masks = open_sequence(res, prefix="mask") if has_masks else None
    table_path = next((res / name for name in TRACK_TABLE_NAMES if (res / name).is_file()), None)
    if table_path is not None:
        graph = TrackGraph.from_table(read_table(table_path))
        logger.debug("%s: graph from %s", res, table_path.name)
    elif masks is not None:
        tracks = read_track_table(res / "res_track.txt")
        graph = TrackGraph.from_ctc(detections_from_sequence(masks), tracks)
        logger.debug("%s: graph rebuilt from masks and res_track.txt", res)
    else:
        raise ValueError(
            f"{res}: no tracks.csv and no maskTTT.tif files; pass a CTC result folder (masks + res_track.txt)"
        )
    n_frames = len(masks) if masks is not None else graph.n_frames
    frame_shape = masks.frame_shape if masks is not None else None
    return ResultFolder(res, graph, read_run_record(res), n_frames, frame_shape)


# ---------------------------------------------------------------------- GEFF
#: Units and descriptions of the node properties celltrack writes into a GEFF (positions in pixels,
#: times in frames; the axes carry the scale to physical units when the movie declares one).
GEFF_NODE_PROPERTIES: dict[str, tuple[str | None, str]] = {
    "t": ("frame", "frame index, 0-based"),
    "y": ("pixel", "centroid row"),
    "x": ("pixel", "centroid column"),
    "area": ("pixel^2", "object area"),
    "label": (None, "object label in the frame's mask, 0 for a position without an object"),
    "track_id": (None, "CTC track id (res_track.txt label); a link that skips frames starts a new track"),
    "parent_track_id": (None, "CTC parent track id, 0 for none"),
    "tracklet_id": (None, "maximal one-to-one chain (GEFF tracklet)"),
    "lineage_id": (None, "connected component, divisions included (GEFF lineage)"),
    "mean_intensity": ("counts", "mean raw intensity over the object"),
}


def write_geff(
    graph: TrackGraph,
    path: str | Path,
    overwrite: bool = False,
    zarr_format: int = 2,
    calibration: Calibration | None = None,
    movie: str | Path | None = None,
) -> Path:
    """Write the graph as a GEFF zarr group with the ``geff`` package (liveimagetrackingtools.org/geff).

    Node properties: axes ``t`` (frame), ``y``, ``x`` (pixels), ``area``, ``label`` (mask
    label), ``track_id`` / ``parent_track_id`` (CTC tracks, as in ``res_track.txt``),
    ``tracklet_id`` and ``lineage_id`` (GEFF's tracklet and lineage definitions, declared in
    ``track_node_props``), and any other numeric node column. An edge ``cost`` column is kept.
    The metadata name every axis with its type and unit, and, when ``calibration`` knows them,
    the scale to micrometres and seconds (``scale`` / ``scaled_unit``); every property has a unit
    (where it has one) and a description.

    Parameters
    ----------
    graph : TrackGraph
    path : str or pathlib.Path
        The zarr folder to create (``tracks.geff`` or ``tracks.zarr``); written atomically.
    overwrite : bool
        Replace an existing ``path``.
    zarr_format : int
        2 (default, read by every GEFF reader) or 3.
    calibration : Calibration, optional
        Pixel size and frame interval of the movie.
    movie : str or pathlib.Path, optional
        The movie the tracks belong to, recorded in the metadata's ``extra``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        When the ``geff`` package cannot be imported, or ``zarr_format`` is not 2 or 3.
    """
    try:
        import geff
        from geff.core_io import write_arrays
        from geff_spec import Axis, DisplayHint, GeffMetadata, PropMetadata
    except ImportError as err:
        raise ValueError(
            f"writing GEFF needs the 'geff' package ({err}); reinstall celltrack or run: pip install geff"
        ) from err
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    path = Path(path)
    check_output(path, overwrite)
    calibration = calibration or Calibration()
    table = graph.to_table().set_index("node_id").loc[graph.nodes.index]
    node_props: dict[str, np.ndarray] = {
        "t": graph.nodes["frame"].to_numpy(np.int64),
        "y": graph.nodes["y"].to_numpy(np.float64),
        "x": graph.nodes["x"].to_numpy(np.float64),
        "area": graph.nodes["area"].to_numpy(),
        "label": graph.nodes["label"].to_numpy(np.int64),
        "track_id": table["track_id"].to_numpy(np.int64),
        "parent_track_id": table["parent_track_id"].to_numpy(np.int64),
        "tracklet_id": tracklet_ids(graph).to_numpy(),
        "lineage_id": lineage_ids(graph).to_numpy(),
    }
    for column in graph.nodes.columns:
        values = graph.nodes[column]
        if column not in node_props and column != "frame" and pd.api.types.is_numeric_dtype(values):
            node_props[column] = values.to_numpy()
    edge_props: dict[str, np.ndarray] = {}
    if "cost" in graph.edges.columns:
        edge_props["cost"] = graph.edges["cost"].to_numpy(np.float64)
    node_ids = graph.nodes.index.to_numpy(np.int64)
    edge_ids = graph.edges[["source", "target"]].to_numpy(np.int64).reshape(-1, 2)

    def axis(name: str, kind: str, unit: str, known: bool, scale: float, scaled_unit: str) -> Axis:
        if not known:
            return Axis(name=name, type=kind, unit=unit)
        return Axis(name=name, type=kind, unit=unit, scale=scale, scaled_unit=scaled_unit)

    space = (calibration.space_known, calibration.pixel_size, calibration.space_unit)
    time = (calibration.time_known, calibration.frame_interval, calibration.time_unit)
    other = (None, "node column of the celltrack result")
    metadata = GeffMetadata(
        geff_version=geff.__version__,
        directed=True,
        axes=[
            axis("t", "time", "frame", *time),
            axis("y", "space", "pixel", *space),
            axis("x", "space", "pixel", *space),
        ],
        display_hints=DisplayHint(display_horizontal="x", display_vertical="y", display_time="t"),
        node_props_metadata={
            name: PropMetadata(
                identifier=name,
                dtype=values.dtype,
                unit=GEFF_NODE_PROPERTIES.get(name, other)[0],
                description=GEFF_NODE_PROPERTIES.get(name, other)[1],
            )
            for name, values in node_props.items()
        },
        edge_props_metadata={
            name: PropMetadata(identifier=name, dtype=values.dtype, description="linking cost")
            for name, values in edge_props.items()
        },
        track_node_props={"tracklet": "tracklet_id", "lineage": "lineage_id"},
        extra={"celltrack": {"version": __version__, "movie": str(movie) if movie is not None else None}},
    )
    with atomic_output_dir(path, overwrite) as tmp:
        # geff refuses any existing path as "a geff already present", so write beside and move in.
        staging = tmp / ".staging"
        write_arrays(
            str(staging),
            node_ids,
            {name: {"values": values, "missing": None} for name, values in node_props.items()},
            edge_ids,
            {name: {"values": values, "missing": None} for name, values in edge_props.items()},
            metadata,
            zarr_format=zarr_format,
        )
        for entry in staging.iterdir():
            entry.rename(tmp / entry.name)
        staging.rmdir()
    return path


# ---------------------------------------------------------------------- the movie behind a result
def result_movie(result: ResultFolder, images: str | Path | None = None) -> Path | None:
    """The raw movie of a result: ``images`` when given, else the one its run record names, if it exists."""
    if images is not None:
        return Path(images)
    recorded = ((result.record or {}).get("inputs") or {}).get("images") or {}
    path = recorded.get("path") if isinstance(recorded, dict) else None
    if path and Path(path).exists():
        return Path(path)
    if path:
        logger.warning("%s: the recorded movie %s is gone; pass --images to name it", result.path, path)
    return None


def node_intensities(result: ResultFolder, movie: str | Path) -> pd.Series:
    """Mean raw intensity of every node over its object in the result's masks.

    Parameters
    ----------
    result : ResultFolder
        With masks (``maskTTT.tif``, pixels = CTC track ids).
    movie : str or pathlib.Path
        The raw movie, frame for frame the size of the masks.

    Returns
    -------
    pandas.Series
        float64 indexed by node id (NaN for a node whose track id is missing from its frame's mask).

    Raises
    ------
    ValueError
        Without masks, or a movie of another size.
    """
    if result.frame_shape is None:
        raise ValueError(f"{result.path}: no masks to measure intensities in")
    images = open_sequence(movie)
    masks = open_sequence(result.path, prefix="mask")
    if (len(images), images.frame_shape) != (len(masks), masks.frame_shape):
        raise ValueError(
            f"{movie}: {len(images)} frames of {images.frame_shape} do not match the {len(masks)} masks of "
            f"{masks.frame_shape} in {result.path}; pass the movie this result was tracked on"
        )
    graph = result.graph
    track_of = graph.tracks().node_track
    frames = graph.nodes["frame"].to_numpy()
    out = pd.Series(np.nan, index=graph.nodes.index, dtype=np.float64)
    for t in np.unique(frames):
        mask = masks[int(t)].astype(np.int64).ravel()
        sums = np.bincount(mask, weights=images[int(t)].astype(np.float64).ravel())
        counts = np.bincount(mask)
        nodes = graph.nodes.index[frames == t]
        ids = track_of.loc[nodes].to_numpy()
        inside = ids < len(counts)
        found = np.zeros(len(ids), bool)
        found[inside] = counts[ids[inside]] > 0
        values = np.full(len(ids), np.nan)
        values[found] = sums[ids[found]] / counts[ids[found]]
        out.loc[nodes] = values
    return out


# ---------------------------------------------------------------------- one entry point
def export_tracks(graph: TrackGraph, path: str | Path, fmt: str, overwrite: bool = False) -> list[Path]:
    """Write ``graph`` in one of the graph-only :data:`EXPORT_FORMATS` (all but ``trackmate-xml``).

    Parameters
    ----------
    graph : TrackGraph
    path : str or pathlib.Path
        Output: the spots ``.csv`` (``trackmate``; the edges table goes beside it), a zarr
        folder (``geff``), or a ``.csv`` / ``.parquet`` track table (one row per detection
        with ``track_id`` and ``parent_track_id``, as :meth:`TrackGraph.to_table`).
    fmt : str
        ``trackmate``, ``geff``, ``csv`` or ``parquet``.
    overwrite : bool

    Returns
    -------
    list of pathlib.Path
        The files or folders written.
    """
    path = Path(path)
    if fmt == "trackmate":
        return list(write_trackmate_csv(graph, path, overwrite))
    if fmt == "geff":
        return [write_geff(graph, path, overwrite)]
    if fmt in ("csv", "parquet"):
        if path.suffix.lower() != f".{fmt}":
            raise ValueError(f"{path}: a {fmt} table needs a .{fmt} file name")
        return [write_table(graph.to_table(), path, overwrite)]
    if fmt == "trackmate-xml":
        raise ValueError("trackmate-xml needs the result folder (image size, movie); use export_result")
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")


def export_result(
    res_dir: str | Path,
    path: str | Path,
    fmt: str,
    overwrite: bool = False,
    images: str | Path | None = None,
    pixel_size: float | None = None,
    frame_interval: float | None = None,
) -> list[Path]:
    """Export a result folder in one of :data:`EXPORT_FORMATS` (what ``celltrack export`` runs).

    ``trackmate-xml`` and ``geff`` carry the movie's calibration (its TIFF metadata, or the
    overrides); ``trackmate-xml`` also names the movie and, when it can be read, gives every spot
    its mean intensity.

    Parameters
    ----------
    res_dir : str or pathlib.Path
        The result folder (``NN_RES``).
    path : str or pathlib.Path
        The output file (zarr folder for ``geff``).
    fmt : str
        One of :data:`EXPORT_FORMATS`.
    overwrite : bool
    images : str or pathlib.Path, optional
        The raw movie; default the one named by the result's run record.
    pixel_size : float, optional
        Micrometres per pixel, instead of the movie's metadata.
    frame_interval : float, optional
        Seconds between frames, instead of the movie's metadata.

    Returns
    -------
    list of pathlib.Path
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    check_output(path, overwrite)
    result = read_result(res_dir)
    if fmt not in ("trackmate-xml", "geff"):
        return export_tracks(result.graph, path, fmt, overwrite)
    movie = result_movie(result, images)
    calibration = (read_calibration(movie) if movie is not None else Calibration()).with_overrides(
        pixel_size, frame_interval
    )
    if fmt == "geff":
        return [write_geff(result.graph, path, overwrite, calibration=calibration, movie=movie)]
    if result.frame_shape is None:
        raise ValueError(f"{result.path}: no maskTTT.tif files; TrackMate needs the masks' frame size")
    intensities = None
    if "mean_intensity" in result.graph.nodes.columns:
        intensities = result.graph.nodes["mean_intensity"].astype(np.float64)
    elif movie is not None:
        try:
            intensities = node_intensities(result, movie)
        except ValueError as err:
            logger.warning("no mean intensities: %s", str(err).splitlines()[0])
    image = TrackMateImage(result.frame_shape, result.n_frames, movie, calibration)
    return [write_trackmate_xml(result.graph, path, image, intensities, overwrite, source=str(result.path))]
