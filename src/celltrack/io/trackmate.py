"""TrackMate files: the XML that Fiji's TrackMate opens and Mastodon imports, and TrackMate's CSV tables.

Fiji: Plugins > Tracking > Load a TrackMate file.

The layout follows TrackMate 7's own files (read by its ``TmXmlReader``): a ``Model`` with feature
declarations, every spot under ``AllSpots`` (all attributes numeric: TrackMate reads them as
features), one ``Track`` per lineage (a connected component, divisions included) holding its
edges, the visible tracks under ``FilteredTracks``; then ``Settings`` with the image and its
calibration, a manual detector and tracker (nothing for TrackMate to recompute), and a
``GUIState`` that opens on the view configuration. No display settings are written: TrackMate
then uses the user's defaults.

Positions, radii and times are in physical units when the calibration is known, as TrackMate
keeps them; else in pixels and frames with a scale of 1. The CSV tables (TrackMate's "export to CSV",
read by its CSV importer) hold the same spots and edges, in pixels and frames.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from celltrack import __version__
from celltrack.graph import QUALITY_COLUMNS, TrackGraph, lineage_ids
from celltrack.io.atomic import atomic_output_file, check_output
from celltrack.io.calibration import Calibration

#: The TrackMate file version written (7's layout: MEAN_INTENSITY_CH1, SPEED; readers need >= 2.1.0).
TRACKMATE_FILE_VERSION = "7.14.0"
@dataclass(frozen=True)
class Feature:
    """One TrackMate feature declaration: key, names, dimension (TrackMate's unit class), integer or not."""

    key: str
    name: str
    short: str
    dimension: str
    integer: bool = False


SPOT_FEATURES: tuple[Feature, ...] = (
    Feature("QUALITY", "Quality", "Quality", "QUALITY"),
    Feature("POSITION_X", "X", "X", "POSITION"),
    Feature("POSITION_Y", "Y", "Y", "POSITION"),
    Feature("POSITION_Z", "Z", "Z", "POSITION"),
    Feature("POSITION_T", "T", "T", "TIME"),
    Feature("FRAME", "Frame", "Frame", "NONE", True),
    Feature("RADIUS", "Radius", "R", "LENGTH"),
    Feature("VISIBILITY", "Visibility", "Visibility", "NONE", True),
    Feature("AREA", "Area", "Area", "AREA"),
    Feature("MASK_LABEL", "Mask label", "Mask label", "NONE", True),
    Feature("CTC_TRACK_ID", "CTC track ID", "CTC track", "NONE", True),
    Feature("CTC_PARENT_ID", "CTC parent track ID", "CTC parent", "NONE", True),
)
#: Written when the spots' mean intensity is known: TrackMate 7's key, and the key of earlier
#: versions that readers such as pytrackmate look for.
INTENSITY_FEATURES: tuple[Feature, ...] = (
    Feature("MEAN_INTENSITY_CH1", "Mean intensity ch1", "Mean ch1", "INTENSITY"),
    Feature("MEAN_INTENSITY", "Mean intensity", "Mean", "INTENSITY"),
)
EDGE_FEATURES: tuple[Feature, ...] = (
    Feature("SPOT_SOURCE_ID", "Source spot ID", "Source ID", "NONE", True),
    Feature("SPOT_TARGET_ID", "Target spot ID", "Target ID", "NONE", True),
    Feature("LINK_COST", "Edge cost", "Cost", "COST"),
    Feature("EDGE_TIME", "Edge time", "Edge T", "TIME"),
    Feature("EDGE_X_LOCATION", "Edge X", "Edge X", "POSITION"),
    Feature("EDGE_Y_LOCATION", "Edge Y", "Edge Y", "POSITION"),
    Feature("EDGE_Z_LOCATION", "Edge Z", "Edge Z", "POSITION"),
    Feature("SPEED", "Speed", "Speed", "VELOCITY"),
    Feature("DISPLACEMENT", "Displacement", "Disp.", "LENGTH"),
)
TRACK_FEATURES: tuple[Feature, ...] = (
    Feature("TRACK_INDEX", "Track index", "Index", "NONE", True),
    Feature("TRACK_ID", "Track ID", "ID", "NONE", True),
    Feature("NUMBER_SPOTS", "Number of spots in track", "N spots", "NONE", True),
    Feature("NUMBER_GAPS", "Number of gaps", "N gaps", "NONE", True),
    Feature("LONGEST_GAP", "Longest gap", "Lgst gap", "NONE", True),
    Feature("NUMBER_SPLITS", "Number of split events", "N splits", "NONE", True),
    Feature("NUMBER_MERGES", "Number of merge events", "N merges", "NONE", True),
    Feature("NUMBER_COMPLEX", "Number of complex points", "N complex", "NONE", True),
    Feature("TRACK_DURATION", "Track duration", "Duration", "TIME"),
    Feature("TRACK_START", "Track start", "Track start", "TIME"),
    Feature("TRACK_STOP", "Track stop", "Track stop", "TIME"),
    Feature("TRACK_DISPLACEMENT", "Track displacement", "Track disp.", "LENGTH"),
    Feature("TRACK_X_LOCATION", "Track mean X", "Track X", "POSITION"),
    Feature("TRACK_Y_LOCATION", "Track mean Y", "Track Y", "POSITION"),
    Feature("TRACK_Z_LOCATION", "Track mean Z", "Track Z", "POSITION"),
    Feature("TRACK_MEAN_SPEED", "Track mean speed", "Mean sp.", "VELOCITY"),
)
_INT32_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class TrackMateImage:
    """What TrackMate's ``ImageData`` says about the movie the tracks belong to.

    Attributes
    ----------
    frame_shape : tuple of int
        ``(Y, X)`` pixels.
    n_frames : int
    path : pathlib.Path or None
        The movie TrackMate opens beside the tracks (a TIFF stack; a folder of frames is named
        as it is, for ImageJ to try), or None.
    calibration : Calibration
    """

    frame_shape: tuple[int, int]
    n_frames: int
    path: Path | None = None
    calibration: Calibration = field(default_factory=Calibration)


def write_trackmate_xml(
    graph: TrackGraph,
    path: str | Path,
    image: TrackMateImage,
    intensities: pd.Series | None = None,
    overwrite: bool = False,
    source: str = "",
) -> Path:
    """Write ``graph`` as a TrackMate XML file.

    Parameters
    ----------
    graph : TrackGraph
        Node ids become spot ids (they must fit TrackMate's 32-bit integers).
    path : str or pathlib.Path
        The ``.xml`` file; written atomically.
    image : TrackMateImage
        Frame size, frame count, movie path and calibration.
    intensities : pandas.Series, optional
        Mean intensity of every node (indexed by node id); without it no intensity feature is declared.
    overwrite : bool
        Replace an existing file.
    source : str
        Where the tracks come from, for the file's log.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        A name not ending in ``.xml``, an existing file without ``overwrite``, node ids outside 0..2^31-1.
    """
    path = Path(path)
    if path.suffix.lower() != ".xml":
        raise ValueError(f"{path}: a TrackMate file is an .xml file; give a name like tracks.xml")
    check_output(path, overwrite)
    ids = graph.nodes.index.to_numpy(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() > _INT32_MAX):
        raise ValueError(f"{path}: node ids must lie in 0..{_INT32_MAX} for TrackMate; renumber the nodes")
    calibration = image.calibration
    spots = spot_table(graph, calibration, intensities)
    edges = edge_table(graph, spots)
    tracks = track_table(spots, edges)

    root = ET.Element("TrackMate", version=TRACKMATE_FILE_VERSION)
    log = ET.SubElement(root, "Log")
    log.text = f"Exported by celltrack {__version__}" + (f" from {source}" if source else "") + ".\n"
    model = ET.SubElement(
        root,
        "Model",
        # OME-NGFF unit names ("micrometer", "second"), which GEFF converters carry over as they are
        spatialunits=calibration.space_unit,
        timeunits=calibration.time_unit,
    )
    spot_features = SPOT_FEATURES + (INTENSITY_FEATURES if intensities is not None else ())
    declarations = ET.SubElement(model, "FeatureDeclarations")
    for tag, features in (
        ("SpotFeatures", spot_features),
        ("EdgeFeatures", EDGE_FEATURES),
        ("TrackFeatures", TRACK_FEATURES),
    ):
        group = ET.SubElement(declarations, tag)
        for feature in features:
            ET.SubElement(
                group,
                "Feature",
                feature=feature.key,
                name=feature.name,
                shortname=feature.short,
                dimension=feature.dimension,
                isint="true" if feature.integer else "false",
            )
    all_spots = ET.SubElement(model, "AllSpots", nspots=str(len(spots)))
    keys = [f.key for f in spot_features]
    for frame, group in spots.groupby("FRAME", sort=True):
        in_frame = ET.SubElement(all_spots, "SpotsInFrame", frame=str(frame))
        for row in group.itertuples(index=False):
            values = row._asdict()
            attributes = {"ID": str(values["ID"]), "name": f"ID{values['ID']}"}
            attributes |= {key: _number(values[key]) for key in keys}
            ET.SubElement(in_frame, "Spot", attributes)
    all_tracks = ET.SubElement(model, "AllTracks")
    edge_keys = [f.key for f in EDGE_FEATURES]
    by_track = dict(tuple(edges.groupby("TRACK_ID", sort=True)))
    for track in tracks.itertuples(index=False):
        values = track._asdict()
        attributes = {"name": f"Track_{values['TRACK_ID']}"}
        attributes |= {f.key: _number(values[f.key]) for f in TRACK_FEATURES}
        element = ET.SubElement(all_tracks, "Track", attributes)
        for edge in by_track[values["TRACK_ID"]].itertuples(index=False):
            edge_values = edge._asdict()
            ET.SubElement(element, "Edge", {key: _number(edge_values[key]) for key in edge_keys})
    filtered = ET.SubElement(model, "FilteredTracks")
    for track_id in tracks["TRACK_ID"]:
        ET.SubElement(filtered, "TrackID", TRACK_ID=str(track_id))
    _settings(root, image, spots)
    gui = ET.SubElement(root, "GUIState", state="ConfigureViews")
    ET.SubElement(gui, "View", key="HYPERSTACKDISPLAYER")

    ET.indent(root, space="  ")
    with atomic_output_file(path, overwrite) as tmp:
        ET.ElementTree(root).write(tmp, encoding="UTF-8", xml_declaration=True)
    return path


def spot_table(graph: TrackGraph, calibration: Calibration, intensities: pd.Series | None) -> pd.DataFrame:
    """One row per node with the TrackMate spot features, in physical units, and its lineage.

    Returns
    -------
    pandas.DataFrame
        Columns ``ID``, every key of :data:`SPOT_FEATURES` (and :data:`INTENSITY_FEATURES` with
        ``intensities``) and ``LINEAGE`` (TrackMate track id, -1 for a spot without links).
    """
    nodes = graph.nodes
    assignment = graph.tracks()
    parents = assignment.tracks.set_index("label")["parent"]
    ctc_track = assignment.node_track.loc[nodes.index].to_numpy(np.int64)
    area = nodes["area"].to_numpy(float)
    quality_column = next((c for c in QUALITY_COLUMNS if c in nodes.columns), None)
    scale, dt = calibration.pixel_size, calibration.frame_interval
    spots = pd.DataFrame(
        {
            "ID": nodes.index.to_numpy(np.int64),
            "QUALITY": nodes[quality_column].to_numpy(float) if quality_column else np.ones(len(nodes)),
            "POSITION_X": nodes["x"].to_numpy(float) * scale,
            "POSITION_Y": nodes["y"].to_numpy(float) * scale,
            "POSITION_Z": np.zeros(len(nodes)),
            "POSITION_T": nodes["frame"].to_numpy(float) * dt,
            "FRAME": nodes["frame"].to_numpy(np.int64),
            "RADIUS": np.sqrt(np.maximum(area, 1.0) / np.pi) * scale,
            "VISIBILITY": np.ones(len(nodes), np.int64),
            "AREA": area * scale**2,
            "MASK_LABEL": nodes["label"].to_numpy(np.int64),
            "CTC_TRACK_ID": ctc_track,
            "CTC_PARENT_ID": parents.reindex(ctc_track).fillna(0).to_numpy(np.int64),
        }
    )
    if intensities is not None:
        mean = intensities.reindex(nodes.index).to_numpy(float)
        spots["MEAN_INTENSITY_CH1"] = mean
        spots["MEAN_INTENSITY"] = mean
    linked = nodes.index.isin(pd.concat([graph.edges["source"], graph.edges["target"]]))
    lineage = lineage_ids(graph).loc[nodes.index].to_numpy()
    # TrackMate numbers tracks 0..K-1 among the spots that have links
    _, renumbered = np.unique(lineage[linked], return_inverse=True)
    spots["LINEAGE"] = -1
    spots.loc[linked, "LINEAGE"] = renumbered
    return spots


def edge_table(graph: TrackGraph, spots: pd.DataFrame) -> pd.DataFrame:
    """One row per link with the TrackMate edge features and ``TRACK_ID`` (the lineage)."""
    by_id = spots.set_index("ID")
    source, target = graph.edges["source"].to_numpy(np.int64), graph.edges["target"].to_numpy(np.int64)
    a, b = by_id.loc[source], by_id.loc[target]
    dx = b["POSITION_X"].to_numpy() - a["POSITION_X"].to_numpy()
    dy = b["POSITION_Y"].to_numpy() - a["POSITION_Y"].to_numpy()
    dt = b["POSITION_T"].to_numpy() - a["POSITION_T"].to_numpy()
    displacement = np.hypot(dx, dy)
    has_cost = "cost" in graph.edges.columns
    cost = graph.edges["cost"].to_numpy(float) if has_cost else np.full(len(source), -1.0)
    return pd.DataFrame(
        {
            "TRACK_ID": a["LINEAGE"].to_numpy(np.int64),
            "SPOT_SOURCE_ID": source,
            "SPOT_TARGET_ID": target,
            "LINK_COST": cost,
            "EDGE_TIME": (a["POSITION_T"].to_numpy() + b["POSITION_T"].to_numpy()) / 2.0,
            "EDGE_X_LOCATION": (a["POSITION_X"].to_numpy() + b["POSITION_X"].to_numpy()) / 2.0,
            "EDGE_Y_LOCATION": (a["POSITION_Y"].to_numpy() + b["POSITION_Y"].to_numpy()) / 2.0,
            "EDGE_Z_LOCATION": np.zeros(len(source)),
            "SPEED": displacement / dt if len(source) else np.zeros(0),
            "DISPLACEMENT": displacement,
            "FRAME_STEP": b["FRAME"].to_numpy() - a["FRAME"].to_numpy(),
        }
    ).sort_values(["TRACK_ID", "EDGE_TIME", "SPOT_SOURCE_ID"], kind="stable")


def track_table(spots: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """One row per TrackMate track (lineage with links) with the :data:`TRACK_FEATURES`."""
    in_tracks = spots[spots["LINEAGE"] >= 0].sort_values(["LINEAGE", "FRAME", "ID"], kind="stable")
    grouped = in_tracks.groupby("LINEAGE")
    first, last = grouped.head(1).set_index("LINEAGE"), grouped.tail(1).set_index("LINEAGE")
    by_track = edges.groupby("TRACK_ID")
    out_degree = edges.groupby("SPOT_SOURCE_ID").size()
    splits = (
        in_tracks.assign(split=out_degree.reindex(in_tracks["ID"]).fillna(0).to_numpy() >= 2)
        .groupby("LINEAGE")["split"]
        .sum()
    )
    gaps = edges.assign(gap=edges["FRAME_STEP"] > 1, skipped=edges["FRAME_STEP"] - 1).groupby("TRACK_ID")
    start, stop = grouped["POSITION_T"].min(), grouped["POSITION_T"].max()
    index = grouped.size().index
    tracks = pd.DataFrame(
        {
            "TRACK_INDEX": np.arange(len(index), dtype=np.int64),
            "TRACK_ID": index.to_numpy(np.int64),
            "NUMBER_SPOTS": grouped.size().to_numpy(np.int64),
            "NUMBER_GAPS": gaps["gap"].sum().reindex(index).to_numpy(np.int64),
            "LONGEST_GAP": gaps["skipped"].max().reindex(index).to_numpy(np.int64),
            "NUMBER_SPLITS": splits.reindex(index).to_numpy(np.int64),
            "NUMBER_MERGES": np.zeros(len(index), np.int64),
            "NUMBER_COMPLEX": np.zeros(len(index), np.int64),
            "TRACK_DURATION": (stop - start).to_numpy(),
            "TRACK_START": start.to_numpy(),
            "TRACK_STOP": stop.to_numpy(),
            "TRACK_DISPLACEMENT": np.hypot(
                last["POSITION_X"] - first["POSITION_X"], last["POSITION_Y"] - first["POSITION_Y"]
            ).to_numpy(),
            "TRACK_X_LOCATION": grouped["POSITION_X"].mean().to_numpy(),
            "TRACK_Y_LOCATION": grouped["POSITION_Y"].mean().to_numpy(),
            "TRACK_Z_LOCATION": np.zeros(len(index)),
            "TRACK_MEAN_SPEED": by_track["SPEED"].mean().reindex(index).to_numpy(),
        }
    )
    tracks["LONGEST_GAP"] = np.where(tracks["NUMBER_GAPS"] > 0, tracks["LONGEST_GAP"], 0)
    return tracks


def _settings(root: ET.Element, image: TrackMateImage, spots: pd.DataFrame) -> None:
    calibration = image.calibration
    settings = ET.SubElement(root, "Settings")
    folder, filename = ("", "")
    if image.path is not None:
        folder, filename = str(image.path.absolute().parent), image.path.name
    height, width = image.frame_shape
    ET.SubElement(
        settings,
        "ImageData",
        filename=filename,
        folder=folder,
        width=str(width),
        height=str(height),
        nslices="1",
        nframes=str(image.n_frames),
        pixelwidth=_number(calibration.pixel_size),
        pixelheight=_number(calibration.pixel_size),
        voxeldepth=_number(calibration.pixel_size),
        timeinterval=_number(calibration.frame_interval),
    )
    ET.SubElement(
        settings,
        "BasicSettings",
        xstart="0",
        xend=str(width - 1),
        ystart="0",
        yend=str(height - 1),
        zstart="0",
        zend="0",
        tstart="0",
        tend=str(max(image.n_frames - 1, 0)),
    )
    radius = float(np.median(spots["RADIUS"])) if len(spots) else calibration.pixel_size
    ET.SubElement(settings, "DetectorSettings", DETECTOR_NAME="MANUAL_DETECTOR", RADIUS=_number(radius))
    # every spot passes the initial quality filter (readers such as pytrackmate apply it)
    lowest = float(spots["QUALITY"].min()) if len(spots) else 1.0
    threshold = 0.0 if lowest > 0 else np.floor(lowest) - 1.0
    ET.SubElement(settings, "InitialSpotFilter", feature="QUALITY", value=_number(threshold), isabove="true")
    ET.SubElement(settings, "SpotFilterCollection")
    ET.SubElement(settings, "TrackerSettings", TRACKER_NAME="MANUAL_TRACKER")
    ET.SubElement(settings, "TrackFilterCollection")
    analyzers = ET.SubElement(settings, "AnalyzerCollection")
    for tag in ("SpotAnalyzers", "EdgeAnalyzers", "TrackAnalyzers"):
        ET.SubElement(analyzers, tag)


def _number(value: object) -> str:
    """A number as TrackMate parses it (Java's Double.valueOf / Integer.parseInt)."""
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    number = float(value)  # type: ignore[arg-type]
    if np.isnan(number):
        return "NaN"
    if np.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return repr(number)


# ---------------------------------------------------------------------- CSV tables
# TrackMate's table export writes four header rows per column: feature key, name, short name, units.
_SPOT_HEADER: tuple[tuple[str, str, str, str], ...] = (
    ("LABEL", "Label", "Label", ""),
    ("ID", "Spot ID", "Spot ID", ""),
    ("TRACK_ID", "Track ID", "Track ID", ""),
    ("QUALITY", "Quality", "Quality", "(quality)"),
    ("POSITION_X", "X", "X", "(pixel)"),
    ("POSITION_Y", "Y", "Y", "(pixel)"),
    ("POSITION_Z", "Z", "Z", "(pixel)"),
    ("POSITION_T", "T", "T", "(frame)"),
    ("FRAME", "Frame", "Frame", ""),
    ("RADIUS", "Radius", "R", "(pixel)"),
    ("VISIBILITY", "Visibility", "Visibility", ""),
    ("AREA", "Area", "Area", "(pixel^2)"),
    ("MEAN_INTENSITY_CH1", "Mean intensity ch1", "Mean ch1", "(counts)"),
    ("CTC_TRACK_ID", "CTC track ID", "CTC track", ""),
    ("CTC_PARENT_ID", "CTC parent track ID", "CTC parent", ""),
    ("MASK_LABEL", "Mask label", "Mask label", ""),
)
_EDGE_HEADER: tuple[tuple[str, str, str, str], ...] = (
    ("LABEL", "Label", "Label", ""),
    ("TRACK_ID", "Track ID", "Track ID", ""),
    ("SPOT_SOURCE_ID", "Source spot ID", "Source ID", ""),
    ("SPOT_TARGET_ID", "Target spot ID", "Target ID", ""),
    ("LINK_COST", "Edge cost", "Cost", "(cost)"),
    ("SPEED", "Speed", "Speed", "(pixel/frame)"),
    ("DISPLACEMENT", "Displacement", "Disp.", "(pixel)"),
    ("EDGE_TIME", "Edge time", "Edge T", "(frame)"),
    ("EDGE_X_LOCATION", "Edge X", "Edge X", "(pixel)"),
    ("EDGE_Y_LOCATION", "Edge Y", "Edge Y", "(pixel)"),
    ("EDGE_Z_LOCATION", "Edge Z", "Edge Z", "(pixel)"),
)


def trackmate_tables(graph: TrackGraph) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The spots and edges tables of TrackMate's CSV export, without the header rows.

    The same spots and edges as the XML file (:func:`spot_table`, :func:`edge_table`), in pixels and
    frames. TrackMate calls a whole lineage (a connected component, divisions included) a track:
    ``TRACK_ID`` is its 0-based number and stays empty for spots without any link. The CTC track of
    every spot is kept in ``CTC_TRACK_ID`` / ``CTC_PARENT_ID``. ``LINK_COST`` is the edge's ``cost``
    column when the graph has one, else -1 (TrackMate's value for links it did not score).

    Parameters
    ----------
    graph : TrackGraph

    Returns
    -------
    spots : pandas.DataFrame
        Columns from ``LABEL`` to ``MASK_LABEL`` (``MEAN_INTENSITY_CH1`` only when the nodes
        have ``mean_intensity``), sorted by track then frame, unlinked spots last.
    edges : pandas.DataFrame
        Columns ``LABEL, TRACK_ID, SPOT_SOURCE_ID, SPOT_TARGET_ID, LINK_COST, SPEED, ...``.
    """
    intensities = graph.nodes["mean_intensity"] if "mean_intensity" in graph.nodes.columns else None
    table = spot_table(graph, Calibration(), intensities)
    track_id = pd.array(table["LINEAGE"].to_numpy(), dtype="Int64")
    track_id[table["LINEAGE"].to_numpy() < 0] = pd.NA
    spots = table.assign(LABEL=[f"ID{i}" for i in table["ID"]], TRACK_ID=track_id)
    spots = spots[[key for key, *_ in _SPOT_HEADER if key in spots.columns]]
    spots = spots.sort_values(["TRACK_ID", "FRAME", "ID"], na_position="last", kind="stable")
    edges = edge_table(graph, table)
    labels = [f"ID{s} → ID{t}" for s, t in zip(edges["SPOT_SOURCE_ID"], edges["SPOT_TARGET_ID"], strict=True)]
    edges = edges.assign(LABEL=labels)[[key for key, *_ in _EDGE_HEADER]]
    return spots.reset_index(drop=True), edges.reset_index(drop=True)


def trackmate_edges_path(spots_path: str | Path) -> Path:
    """The edges table beside a spots table: ``*spots.csv`` → ``*edges.csv``, else ``*_edges.csv``."""
    spots_path = Path(spots_path)
    stem = spots_path.stem
    if stem.lower().endswith("spots"):
        return spots_path.with_name(f"{stem[:-5]}edges{spots_path.suffix}")
    return spots_path.with_name(f"{stem}_edges{spots_path.suffix}")


def write_trackmate_csv(
    graph: TrackGraph, path: str | Path, overwrite: bool = False, edges_path: str | Path | None = None
) -> tuple[Path, Path]:
    """Write TrackMate's "export to CSV" spots and edges tables (four header rows each).

    Parameters
    ----------
    graph : TrackGraph
    path : str or pathlib.Path
        The spots table (``.csv``).
    overwrite : bool
        Replace existing files; otherwise existing outputs raise before anything is written.
    edges_path : str or pathlib.Path, optional
        The edges table; default :func:`trackmate_edges_path` of ``path``.

    Returns
    -------
    tuple of pathlib.Path
        ``(spots_path, edges_path)``.

    Notes
    -----
    Units are pixels and frames. TrackMate reads such tables through its CSV importer
    (Fiji → Plugins → Tracking → TrackMate CSV importer), mapping ``POSITION_X/Y``,
    ``FRAME``, ``RADIUS`` and ``TRACK_ID``; see :func:`trackmate_tables` for the columns.
    """
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: a TrackMate table is a .csv file; give a name like spots.csv")
    edges_path = Path(edges_path) if edges_path is not None else trackmate_edges_path(path)
    if edges_path.resolve() == path.resolve():
        raise ValueError(f"{path}: the spots and edges tables need different file names")
    for target in (path, edges_path):
        check_output(target, overwrite)
    spots, edges = trackmate_tables(graph)
    for target, table, header in ((path, spots, _SPOT_HEADER), (edges_path, edges, _EDGE_HEADER)):
        columns = {key: (name, short, unit) for key, name, short, unit in header}
        with atomic_output_file(target, overwrite) as tmp:
            _write_four_row_csv(tmp, table, [(key, *columns[key]) for key in table.columns])
    return path, edges_path


def _write_four_row_csv(path: Path, table: pd.DataFrame, header: Sequence[tuple[str, str, str, str]]) -> None:
    rows = [",".join(_csv_cell(part[i]) for part in header) for i in range(4)]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("\n".join(rows) + "\n")
        table.to_csv(handle, header=False, index=False, lineterminator="\n")


def _csv_cell(text: str) -> str:
    return f'"{text}"' if any(c in text for c in ',"\n') else text
