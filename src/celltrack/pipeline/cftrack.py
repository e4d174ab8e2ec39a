"""The study's tracking run: correlation filters from first-frame nuclei, written as a CTC result."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile
import torch

from celltrack.cftrack import CFTracker, CFTrackerConfig, CFTrackResult, FrameState
from celltrack.features import FeatureExtractor, RawExtractor
from celltrack.graph import measure_detections
from celltrack.io import ImageSequence, atomic_output_dir, frame_name, open_sequence, write_table
from celltrack.io.ctc import format_track_table, render_result_masks
from celltrack.io.provenance import RECORD_NAME, StageTimer, dumps_record, run_record, sequence_fingerprint
from celltrack.pipeline.track import Progress, check_detections_match, no_progress, resolve_device
from celltrack.segment.classic import ClassicSegmenter

logger = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = ("raw", "segnet", "recognet")


def build_extractor(
    name: str,
    device: torch.device,
    nucleus_diameter: float | None = None,
    cache_dir: str | Path | None = None,
) -> FeatureExtractor:
    """The feature extractor called ``name``.

    Parameters
    ----------
    name : str
        ``raw``, ``segnet`` (the shipped default SegNet's four feature layers) or ``recognet``.
    device : torch.device
    nucleus_diameter : float, optional
        Nucleus diameter in the movie (px), so that network features see nuclei at their training scale.
    cache_dir : path, optional
        zarr folder caching network feature maps per frame.
    """
    if name == "raw":
        return RawExtractor(device=device)
    cache = None
    if cache_dir is not None:
        from celltrack.io.feature_cache import FeatureCache

        cache = FeatureCache(cache_dir, namespace=f"{name}-{nucleus_diameter or 'native'}")
    if name == "segnet":
        from celltrack.features.segnet import SegNetFeatures

        return SegNetFeatures(nucleus_diameter=nucleus_diameter, device=device, cache=cache)
    if name == "recognet":
        from celltrack.features.recognet import RecogNetFeatures

        if cache is not None:
            logger.warning("--cache-features applies to segnet features; recognet maps are not cached")
        return RecogNetFeatures(device=device, nucleus_diameter=nucleus_diameter)
    raise ValueError(f"unknown features {name!r}; choose one of {', '.join(FEATURES)}")


def initial_targets(
    images: ImageSequence,
    init: np.ndarray | None,
    detections: ImageSequence | None,
    cells: Sequence[int] | None,
    start: int = 0,
) -> pd.DataFrame:
    """The nuclei to follow: labelled objects of the first frame, optionally a subset by label."""
    if init is not None:
        if init.shape != images.frame_shape:
            raise ValueError(
                f"--init label image is {init.shape}, frames are {images.frame_shape}; they must match"
            )
        labels = init
    elif detections is not None:
        labels = detections[start]
    else:
        labels = ClassicSegmenter().segment(images[start])
    targets = measure_detections(np.asarray(labels), start)
    if cells:
        unknown = sorted(set(cells) - set(targets["label"]))
        if unknown:
            raise ValueError(
                f"--cells {unknown[:5]} are not labels of the first frame (it has {len(targets)} nuclei)"
            )
        targets = targets[targets["label"].isin(cells)].reset_index(drop=True)
    if targets.empty:
        raise ValueError("the first frame has no nuclei to track; check --init/--detections or the movie")
    return targets


@dataclass
class CFTrackRun:
    """What :func:`run_cf_track` produced."""

    result: CFTrackResult
    out_dir: Path
    timings: dict[str, float]

    def summary(self) -> dict[str, Any]:
        lost = self.result.lost_at >= 0
        tracked = int(np.isfinite(self.result.positions[..., 0]).sum())
        return {
            "cells": len(self.result.labels),
            "lost": int(lost.sum()),
            "cell_frames": tracked,
            "window": self.result.window,
        }


def run_cf_track(
    images: ImageSequence | str | Path,
    out_dir: str | Path,
    config: CFTrackerConfig | None = None,
    init: np.ndarray | str | Path | None = None,
    detections: ImageSequence | str | Path | None = None,
    cells: Sequence[int] | None = None,
    features: str | FeatureExtractor = "raw",
    device: str = "cpu",
    overwrite: bool = False,
    progress: Progress = no_progress,
    on_frame: Callable[[FrameState], None] | None = None,
    selected_label: int | None = None,
    cache_features: str | Path | None = None,
) -> CFTrackRun:
    """Follow first-frame nuclei with correlation filters and write the results.

    ``out_dir`` receives a CTC result (``maskTTT.tif``, ``res_track.txt``; each tracked cell
    takes the detection under its position when ``detections`` are given, otherwise a disc of
    its initial size), ``trajectories.csv`` (centroid, peak and PSR per cell and frame),
    ``filters.npz`` (the final filters) and ``celltrack.json``. ``features`` is an extractor name
    (:func:`build_extractor`) or a ready :class:`~celltrack.features.FeatureExtractor`.
    """
    images = images if isinstance(images, ImageSequence) else open_sequence(images)
    if isinstance(detections, str | Path):
        detections = open_sequence(detections)
    if detections is not None:
        check_detections_match(images, detections)
    if isinstance(init, str | Path):
        init_path = Path(init)
        if not init_path.is_file():
            raise ValueError(f"{init_path}: --init label image not found")
        try:
            init = tifffile.imread(init_path)
        except (OSError, ValueError, tifffile.TiffFileError) as err:
            raise ValueError(f"{init_path}: cannot read the --init label image ({err})") from err
        if init.dtype.kind not in "ui":
            raise ValueError(f"{init_path}: --init must be an integer label image, got {init.dtype}")
    timer = StageTimer()
    torch_device = resolve_device(device)
    with atomic_output_dir(out_dir, overwrite) as tmp:
        targets = initial_targets(images, init, detections, cells)
        diameter = float(2 * np.sqrt(np.median(targets["area"]) / np.pi))
        extractor = (
            features
            if isinstance(features, FeatureExtractor)
            else build_extractor(features, torch_device, diameter, cache_features)
        )
        selected = 0
        if selected_label is not None and selected_label in set(targets["label"]):
            selected = int(np.flatnonzero(targets["label"].to_numpy() == selected_label)[0])
        tracker = CFTracker(extractor, config, device=torch_device)
        frames = _ProgressFrames(images, progress)
        with timer.stage("tracking"):
            result = tracker.track(frames, targets, on_frame=on_frame, selected=selected)
        with timer.stage("writing"):
            graph = result.graph(detections)
            n = len(images)
            label_source = (lambda t: detections[t]) if detections is not None else None
            for t, mask in render_result_masks(graph, images.frame_shape, n, label_source):
                tifffile.imwrite(tmp / frame_name("mask", t, n), mask, compression="zlib")
            (tmp / "res_track.txt").write_text(format_track_table(graph.tracks().tracks), encoding="utf-8")
            write_table(result.trajectories(), tmp / "trajectories.csv")
            buffer = io.BytesIO()
            np.savez_compressed(buffer, labels=result.labels, **result.filters)
            (tmp / "filters.npz").write_bytes(buffer.getvalue())
        run = CFTrackRun(result, Path(out_dir), dict(timer.seconds))
        inputs: dict[str, Any] = {"images": sequence_fingerprint(images)}
        if detections is not None:
            inputs["detections"] = sequence_fingerprint(detections)
        cache = getattr(extractor, "cache", None)
        if cache is not None:
            logger.info(
                "feature cache %s: %.1f MB per frame (float16), %d hits, %d misses",
                cache.path,
                cache.megabytes_per_frame(),
                cache.hits,
                cache.misses,
            )
        full_config = {
            "tracker": (config or CFTrackerConfig()).model_dump(mode="json"),
            "features": features if isinstance(features, str) else features.name,
            "device": str(torch_device),
            "cells": list(cells or []),
        }
        record = run_record("cf-track", full_config, inputs, timer.seconds, extra={"summary": run.summary()})
        (tmp / RECORD_NAME).write_bytes(dumps_record(record))
    return run


class _ProgressFrames:
    """A frame sequence whose iteration over indices reports progress (the tracker indexes frames)."""

    def __init__(self, images: ImageSequence, progress: Progress) -> None:
        self._images = images
        self._bar = iter(progress(range(len(images)), len(images), "cf-track"))

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, t: int) -> np.ndarray:
        next(self._bar, None)
        return self._images[t]
