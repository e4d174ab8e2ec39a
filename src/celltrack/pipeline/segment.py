"""Segmentation stage of the pipeline: choose the segmenter, run it frame by frame, write label images."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
from pydantic import BaseModel, ConfigDict, Field, field_validator

from celltrack.io import ImageSequence, atomic_output_dir, frame_name, open_sequence
from celltrack.io.provenance import RECORD_NAME, StageTimer, dumps_record, run_record, sequence_fingerprint
from celltrack.segment import drop_insignificant_objects
from celltrack.segment.classic import ClassicConfig, ClassicSegmenter
from celltrack.segment.merges import MergeSplitConfig, MergeSplitter

logger = logging.getLogger(__name__)


class SegmentationConfig(BaseModel):
    """Which segmenter runs, and its parameters.

    ``method="auto"`` uses SegNet with ``model`` (or the model shipped with celltrack) and falls
    back to the classic segmenter, with a warning, only when no model can be loaded.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["auto", "segnet", "classic"] = Field("auto", description="Segmentation method.")
    model: Path | None = Field(None, description="SegNet model folder; None = the shipped default.")
    nucleus_diameter: float | Literal["auto"] | None = Field(
        "auto",
        description="Nucleus diameter in the movie (px), used to rescale frames to the model's scale; 'auto' "
        "measures it on a frame with the classic segmenter; None = use frames as they are.",
    )

    @field_validator("nucleus_diameter")
    @classmethod
    def _positive(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float | int) and value <= 0:
            raise ValueError(f"nucleus_diameter must be positive, got {value}")
        return value

    min_significance: float = Field(
        5.0,
        ge=0,
        description="Objects whose mean intensity exceeds the background ring around them by fewer than this "
        "many standard errors (noise std / sqrt(area)) are dropped: noise blobs in dim movies. 0 keeps all.",
    )
    classic: ClassicConfig = Field(default_factory=ClassicConfig)
    merge_split: MergeSplitConfig = Field(
        default_factory=MergeSplitConfig,
        description="Cut objects that hold two nuclei of the previous frame (frames are segmented in order).",
    )


def estimate_diameter(frame: np.ndarray) -> float | None:
    """Median equivalent diameter (px) of the nuclei the classic segmenter finds in ``frame``."""
    labels = ClassicSegmenter().segment(frame)
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return float(2 * np.sqrt(np.median(areas) / np.pi)) if len(areas) else None


def build_segmenter(
    config: SegmentationConfig, device: str = "cpu", sample: np.ndarray | None = None
) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """The segmentation function a config asks for, and the name of the method actually used.

    Parameters
    ----------
    config : SegmentationConfig
    device : str
    sample : numpy.ndarray, shape (Y, X), optional
        A frame of the movie, to measure the nucleus diameter when it is ``"auto"``.
    """
    if config.nucleus_diameter == "auto":
        diameter = estimate_diameter(sample) if sample is not None else None
        logger.info("nucleus diameter measured on a frame: %s px", f"{diameter:.1f}" if diameter else "none")
        config = config.model_copy(update={"nucleus_diameter": diameter})
    if config.method == "classic":
        classic = config.classic
        if config.nucleus_diameter is not None:
            classic = classic.model_copy(update={"nucleus_diameter": config.nucleus_diameter})
        return "classic", _significant_only(ClassicSegmenter(classic).segment, config)
    from celltrack.models.segnet import SegNet
    from celltrack.segment.segnet import SegNetSegmenter, SegNetSegmenterConfig

    try:
        model = SegNet.load(config.model, device=device)
    except ValueError:
        if config.method == "segnet" or config.model is not None:
            raise
        logger.warning("no usable SegNet model was found; segmenting with the classic method instead")
        return build_segmenter(config.model_copy(update={"method": "classic"}), device)
    segmenter = SegNetSegmenter(
        SegNetSegmenterConfig(nucleus_diameter=config.nucleus_diameter, device=device), model=model
    )
    return "segnet", _significant_only(segmenter.segment, config)


def _significant_only(
    segment: Callable[[np.ndarray], np.ndarray], config: SegmentationConfig
) -> Callable[[np.ndarray], np.ndarray]:
    """``segment`` followed by :func:`celltrack.segment.drop_insignificant_objects` (when switched on)."""
    if config.min_significance == 0:
        return segment
    diameter = config.nucleus_diameter if isinstance(config.nucleus_diameter, float | int) else None
    ring_width = max(3, round(diameter)) if diameter else None

    def segment_significant(frame: np.ndarray) -> np.ndarray:
        return drop_insignificant_objects(segment(frame), frame, config.min_significance, ring_width)

    return segment_significant


def model_checksums(config: SegmentationConfig, method: str) -> dict[str, str]:
    """Checksums of the weights a segmentation run used (for ``celltrack.json``)."""
    if method != "segnet":
        return {}
    from celltrack.io.provenance import file_checksum
    from celltrack.models.segnet import DEFAULT_SEGNET_PATH

    folder = Path(config.model) if config.model is not None else DEFAULT_SEGNET_PATH
    weights = folder / "weights.pt"
    return {"segnet": file_checksum(weights)} if weights.is_file() else {}


def run_segmentation(
    images: ImageSequence | str | Path,
    out_dir: str | Path,
    config: SegmentationConfig | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    progress: Callable[..., Any] | None = None,
) -> Path:
    """Segment every frame and write ``maskTTT.tif`` label images (+ ``celltrack.json``) atomically."""
    config = config or SegmentationConfig()
    images = images if isinstance(images, ImageSequence) else open_sequence(images)
    method, segment = build_segmenter(config, device, images[len(images) // 2] if len(images) else None)
    timer = StageTimer()
    n = len(images)
    counts = []
    with atomic_output_dir(out_dir, overwrite) as tmp:
        frames = range(n) if progress is None else progress(range(n), n, "segment")
        segmented = MergeSplitter(config.merge_split).split_movie(segment(images[t]) for t in frames)
        with timer.stage("segmentation"):
            for t, labels in enumerate(segmented):
                dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
                tifffile.imwrite(tmp / frame_name("mask", t, n), labels.astype(dtype), compression="zlib")
                counts.append(int(len(np.unique(labels)) - (labels == 0).any()))
        full = config.model_dump(mode="json") | {"method_used": method, "device": device}
        record = run_record(
            "segment",
            full,
            {"images": sequence_fingerprint(images)},
            timer.seconds,
            models=model_checksums(config, method),
            extra={"nuclei_per_frame": counts},
        )
        (tmp / RECORD_NAME).write_bytes(dumps_record(record))
    return Path(out_dir)
