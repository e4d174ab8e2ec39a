"""The staged tracking pipeline: frames → label images → detections → track graph → CTC results.

Each stage is a pure component (segmenter, linker); this module only moves data between
them and the file system, frame by frame so that memory stays bounded on long movies.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import tifffile
import torch
from pydantic import BaseModel, ConfigDict, Field

from celltrack.graph import TrackGraph, drop_far_pieces, measure_detections
from celltrack.io import (
    ImageSequence,
    atomic_output_dir,
    frame_name,
    open_sequence,
    write_table,
)
from celltrack.io.ctc import format_track_table, label_frame, render_result_masks
from celltrack.io.provenance import RECORD_NAME, StageTimer, dumps_record, run_record, sequence_fingerprint
from celltrack.link import Linker, LinkerConfig
from celltrack.pipeline.segment import MovieSegmenter, SegmentationConfig, model_checksums

logger = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[Iterable[T], int, str], Iterable[T]]
#: Whether ``celltrack track`` scores mitosis with RecogNet by default (see docs/benchmarks.md).
MITOSIS_DEFAULT_ENABLED = False


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but no CUDA GPU is available; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def no_progress(iterable: Iterable[T], total: int, desc: str) -> Iterable[T]:
    """The default progress reporter: none."""
    return iterable


class MitosisConfig(BaseModel):
    """RecogNet's cell-state head as a per-detection ``mitosis_score`` for the linker's division step.

    The score is the probability of the ``mitosis`` state for a crop around each detection; the linker's
    division log-odds rise by ``linker.division.mitosis_bonus`` for full evidence (the larger of the
    mother's score and the daughters' mean).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        MITOSIS_DEFAULT_ENABLED,
        description="Score every detection with RecogNet and add a mitosis_score column to the detections.",
    )
    model: str | None = Field(
        None, description="RecogNet model folder; None: the model shipped with celltrack."
    )


class TrackingConfig(BaseModel):
    """The whole pipeline's configuration (what ``--config FILE.toml`` sets)."""

    model_config = ConfigDict(extra="forbid")

    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    mitosis: MitosisConfig = Field(default_factory=MitosisConfig)
    linker: LinkerConfig = Field(default_factory=LinkerConfig)
    marker_radius: float = Field(3.0, gt=0, description="Disc radius (px) for positions without a mask.")
    frame_cache_mb: int = Field(
        1024,
        ge=0,
        description="Decoded raw frames kept in memory per movie (MiB): segmentation, the linker's "
        "intensities and its filters each read the movie, and decoding a compressed frame costs more than "
        "linking it (a 92-frame 700 x 1100 uint16 movie takes 140 MiB). Larger movies keep their first "
        "frames and read the rest again; 0 keeps none.",
    )


@dataclass
class TrackingResult:
    """What a pipeline run produced."""

    graph: TrackGraph
    out_dir: Path
    n_frames: int
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        tracks = self.graph.tracks().tracks
        return {
            "frames": self.n_frames,
            "detections": len(self.graph),
            "tracks": len(tracks),
            "divisions": len(self.graph.divisions()),
        }


def _label_frames(
    images: ImageSequence,
    detections_source: ImageSequence | None,
    segmenter: MovieSegmenter | None,
    store: Path | None,
    progress: Progress,
) -> pd.DataFrame:
    """Segment (or read) every frame, keep its labels in ``store`` (if given), and measure its detections.

    Own segmentations are corrected frame by frame (objects holding two nuclei of the previous frame are
    cut apart: :class:`MovieSegmenter`); given detections are kept as they are
    (and need no copy: the result masks are drawn from them again).
    """
    tables = []
    n = len(images)
    ticks = progress(range(n), n, "segment" if detections_source is None else "read detections")
    if detections_source is None:
        if segmenter is None:
            raise ValueError("a segmenter is needed when no detections are given")
        frames = segmenter.label_frames(images, ticks)
    else:
        # checked, and a label split into pieces far apart keeps its largest one (with a warning)
        frames = (label_frame(detections_source, t) for t in ticks)
    for t, labels in enumerate(frames):
        if store is not None:
            dtype = np.uint32 if labels.max(initial=0) > np.iinfo(np.uint16).max else np.uint16
            tifffile.imwrite(store / frame_name("labels", t, n), labels.astype(dtype))
        # the linker measures intensity itself, over the central part of each nucleus
        tables.append(measure_detections(labels, t))
    return (
        pd.concat(tables, ignore_index=True) if tables else measure_detections(np.zeros((1, 1), np.uint16), 0)
    )


def check_detections_match(images: ImageSequence, detections: ImageSequence) -> None:
    """Detections must have one label image per frame, of the frame's size."""
    if len(detections) != len(images):
        raise ValueError(
            f"{detections.source}: {len(detections)} detection frames for {len(images)} image frames in "
            f"{images.source}; pass the detections of this movie"
        )
    if detections.frame_shape != images.frame_shape:
        raise ValueError(
            f"{detections.source}: detection frames are {detections.frame_shape}, images are "
            f"{images.frame_shape}; pass the detections of this movie"
        )


def run_tracking(
    images: ImageSequence | str | Path,
    out_dir: str | Path,
    config: TrackingConfig | None = None,
    detections: ImageSequence | str | Path | None = None,
    overwrite: bool = False,
    progress: Progress = no_progress,
    command: str = "track",
    device: str = "cpu",
    table_name: str = "tracks.csv",
) -> TrackingResult:
    """Segment (or take given detections), link and write a CTC result folder.

    Parameters
    ----------
    images : ImageSequence or path
        The raw movie.
    out_dir : str or pathlib.Path
        Result folder: ``maskTTT.tif`` + ``res_track.txt`` (CTC), ``tracks.csv`` (one row per
        detection with ``track_id`` and ``parent_track_id``) and ``celltrack.json`` (provenance).
    config : TrackingConfig, optional
    detections : ImageSequence or path, optional
        Label images to link instead of segmenting (``maskTTT.tif`` or ``man_trackTTT.tif``).
    overwrite : bool
        Replace an existing ``out_dir``.
    progress : callable
        ``progress(iterable, total, description)`` wrapper for per-frame loops.
    command : str
        Name recorded in ``celltrack.json``.
    device : str
        ``auto``, ``cpu`` or ``cuda`` for the networks and correlation filters.
    table_name : str
        File name of the track table inside ``out_dir`` (``.csv`` or ``.parquet``).

    Returns
    -------
    TrackingResult
    """
    config = config or TrackingConfig()
    images = images if isinstance(images, ImageSequence) else open_sequence(images)
    images = images.cached(config.frame_cache_mb << 20)
    if isinstance(detections, str | Path):
        detections = open_sequence(detections)
    if detections is not None:
        check_detections_match(images, detections)
        # read twice (detections, then the result masks): decoded once
        detections = detections.cached(config.frame_cache_mb << 20)
    timer = StageTimer()
    torch_device = resolve_device(device)
    method, segmenter = "given", None
    if detections is None:
        movie = images if len(images) else None
        segmenter = MovieSegmenter.build(config.segmentation, str(torch_device), movie)
        method = segmenter.method
    with atomic_output_dir(out_dir, overwrite) as tmp:
        store = tmp / ".labels"
        store.mkdir()
        with timer.stage("segmentation" if detections is None else "detections"):
            kept = store if detections is None else None
            table = _label_frames(images, detections, segmenter, kept, progress)
        models = model_checksums(config.segmentation, method)
        if config.mitosis.enabled and len(table) and "mitosis_score" not in table.columns:
            with timer.stage("mitosis"):
                table["mitosis_score"], models["recognet"] = score_mitosis(
                    images, table, config.mitosis, torch_device, progress
                )
        with timer.stage("linking"):
            linker = Linker(config.linker)
            effective = linker.resolve(table) if len(table) else config.linker
            graph = linker.link(
                table,
                images,
                device=torch_device,
                progress=lambda it: progress(it, len(images), "link"),
            )
        with timer.stage("writing"):
            n = len(images)

            def labels_of(t: int) -> np.ndarray:
                if detections is not None:
                    # checked, and warned about, when first read; far pieces dropped as then
                    return drop_far_pieces(detections[t])[0]
                return tifffile.imread(store / frame_name("labels", t, n))

            frames = render_result_masks(graph, images.frame_shape, n, labels_of, config.marker_radius)
            for t, mask in progress(frames, n, "write"):
                tifffile.imwrite(tmp / frame_name("mask", t, n), mask, compression="zlib")
            (tmp / "res_track.txt").write_text(format_track_table(graph.tracks().tracks), encoding="utf-8")
            shutil.rmtree(store)
            write_table(graph.to_table(), tmp / table_name)
        inputs: dict[str, Any] = {"images": sequence_fingerprint(images)}
        if detections is not None:
            inputs["detections"] = sequence_fingerprint(detections)
        result = TrackingResult(graph, Path(out_dir), len(images), dict(timer.seconds))
        full_config = config.model_dump(mode="json")
        full_config["linker_effective"] = effective.model_dump(mode="json")
        full_config["device"] = device
        full_config["segmentation_used"] = method
        if segmenter is not None:
            full_config |= {k: v for k, v in segmenter.record().items() if k != "method_used"}
        record = run_record(
            command,
            full_config,
            inputs,
            timer.seconds,
            models=models,
            extra={"summary": result.summary()},
        )
        (tmp / RECORD_NAME).write_bytes(dumps_record(record))
    logger.debug("tracked %s: %s", images.source, result.summary())
    return result


def score_mitosis(
    images: ImageSequence,
    detections: pd.DataFrame,
    config: MitosisConfig,
    device: torch.device | str = "cpu",
    progress: Progress = no_progress,
) -> tuple[np.ndarray, str]:
    """RecogNet mitosis probability of every detection, and the checksum of the weights used.

    Parameters
    ----------
    images : ImageSequence
    detections : pandas.DataFrame
        Columns ``frame, y, x``.
    config : MitosisConfig
    device : torch.device or str
    progress : callable
        ``progress(iterable, total, description)`` wrapper.

    Returns
    -------
    (numpy.ndarray of shape (N,), str)
        Scores in the row order of ``detections``, and the sha256 of ``weights.pt``.
    """
    from celltrack.io.provenance import file_checksum
    from celltrack.models.recognet import DEFAULT_RECOGNET_PATH, RecogNet, mitosis_scores

    folder = Path(config.model) if config.model is not None else DEFAULT_RECOGNET_PATH
    model = RecogNet.load(folder, device=device)
    n_frames = int(detections["frame"].nunique())
    scores = mitosis_scores(model, images, detections, lambda it: progress(it, n_frames, "mitosis"))
    logger.info("mitosis scores: %d of %d detections above 0.5", int((scores > 0.5).sum()), len(scores))
    return scores, file_checksum(folder / "weights.pt")


def load_config(path: str | Path | None, overrides: Sequence[tuple[str, Any]] = ()) -> TrackingConfig:
    """Read a TOML pipeline configuration; unknown keys and wrong types are errors naming the file."""
    import tomllib

    from pydantic import ValidationError

    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: config file not found")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid TOML ({err})") from err
    for dotted, value in overrides:
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        return TrackingConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{path or 'config'}: {where}: {first['msg']}") from err
