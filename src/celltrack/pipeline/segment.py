"""Segmentation stage of the pipeline: choose the segmenter, run it frame by frame, write label images."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
from pydantic import BaseModel, ConfigDict, Field, field_validator

from celltrack.io import ImageSequence, atomic_output_dir, frame_name, open_sequence
from celltrack.io.provenance import RECORD_NAME, StageTimer, dumps_record, run_record, sequence_fingerprint
from celltrack.models.segnet import TestTimeAugmentation
from celltrack.segment import ExtentConfig, drop_insignificant_objects, grow_to_half_maximum
from celltrack.segment.classic import ClassicConfig, ClassicSegmenter
from celltrack.segment.merges import MergeSplitConfig, MergeSplitter
from celltrack.segment.segnet import SegNetSegmenterConfig

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
    test_time_augmentation: TestTimeAugmentation = Field(
        SegNetSegmenterConfig.model_fields["test_time_augmentation"].default,
        description="SegNet probabilities averaged over flips of each frame: 'none', 'flip', 'flips' (4 "
        "passes) or 'd4' (8); see SegNetSegmenterConfig.",
    )
    classic: ClassicConfig = Field(default_factory=ClassicConfig)
    merge_split: MergeSplitConfig = Field(
        default_factory=MergeSplitConfig,
        description="Cut objects that hold two nuclei of the previous frame (frames are segmented in order).",
    )
    grow: ExtentConfig = Field(
        default_factory=ExtentConfig,
        description="After the merge split, SegNet objects grow over adjacent pixels above their local "
        "half-maximum between background and interior (lengths at the model's scale).",
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
    """The per-frame segmentation function a config asks for, and the name of the method actually used.

    Parameters
    ----------
    config : SegmentationConfig
    device : str
    sample : numpy.ndarray, shape (Y, X), optional
        A frame of the movie, to measure the nucleus diameter when it is ``"auto"``.
    """
    segmenter = MovieSegmenter.build(config, device, sample)
    return segmenter.method, segmenter.segment


class MovieSegmenter:
    """A movie's frames in order → labels: segmenter, temporal merge split, growth to the half-maximum.

    Parameters
    ----------
    segment : callable
        ``segment(frame (Y, X)) -> labels (Y, X)`` for one frame.
    config : SegmentationConfig
        ``merge_split`` and ``grow`` are used here.
    method : str
        Name of the method behind ``segment`` (recorded in ``celltrack.json``).
    pixel_scale : float or None
        Frame pixels per SegNet model pixel, for the growth step's lengths; None skips growth (classic
        masks come from an intensity threshold already).
    nucleus_diameter : float, optional
        Nucleus diameter the segmenter works with (px; recorded in ``celltrack.json``).
    """

    def __init__(
        self,
        segment: Callable[[np.ndarray], np.ndarray],
        config: SegmentationConfig,
        method: str = "segnet",
        pixel_scale: float | None = 1.0,
        nucleus_diameter: float | None = None,
    ) -> None:
        self.segment = segment
        self.config = config
        self.method = method
        self.pixel_scale = pixel_scale
        self.nucleus_diameter = nucleus_diameter
        self.splitter = MergeSplitter(config.merge_split)

    @classmethod
    def build(
        cls, config: SegmentationConfig, device: str = "cpu", sample: np.ndarray | None = None
    ) -> MovieSegmenter:
        """The segmenter a config asks for (see :func:`build_segmenter`)."""
        method, segment, pixel_scale, diameter = _per_frame_segmenter(config, device, sample)
        return cls(segment, config, method, pixel_scale, diameter)

    def label_frames(self, images: ImageSequence | np.ndarray, frames: Iterable[int]) -> Iterator[np.ndarray]:
        """Labels of ``frames`` (consecutive, in order), each after the merge split and growth.

        Parameters
        ----------
        images : ImageSequence or numpy.ndarray, shape (T, Y, X)
        frames : iterable of int
            Frame numbers in order (e.g. wrapped in a progress bar).

        Yields
        ------
        numpy.ndarray, shape (Y, X)
        """
        read: list[np.ndarray] = []

        def segmented() -> Iterator[np.ndarray]:
            for t in frames:
                read.append(np.asarray(images[t]))
                yield self.segment(read[-1])

        grow = self.config.grow.enabled and self.pixel_scale is not None
        # split_movie yields each frame as soon as it has read it: one image waits at a time.
        for labels in self.splitter.split_movie(segmented()):
            image = read.pop(0)
            yield grow_to_half_maximum(labels, image, self.config.grow, self.pixel_scale) if grow else labels


def _per_frame_segmenter(
    config: SegmentationConfig, device: str, sample: np.ndarray | None
) -> tuple[str, Callable[[np.ndarray], np.ndarray], float | None, float | None]:
    """Method name, per-frame function, growth pixel scale (None: no growth) and nucleus diameter (px)."""
    if config.nucleus_diameter == "auto":
        diameter = estimate_diameter(sample) if sample is not None else None
        logger.info("nucleus diameter measured on a frame: %s px", f"{diameter:.1f}" if diameter else "none")
        config = config.model_copy(update={"nucleus_diameter": diameter})
    if config.method == "classic":
        classic = config.classic
        if config.nucleus_diameter is not None:
            classic = classic.model_copy(update={"nucleus_diameter": config.nucleus_diameter})
        segment = _significant_only(ClassicSegmenter(classic).segment, config)
        return "classic", segment, None, config.nucleus_diameter  # type: ignore[return-value]
    from celltrack.models.segnet import SegNet
    from celltrack.segment.segnet import SegNetSegmenter

    try:
        model = SegNet.load(config.model, device=device)
    except ValueError:
        if config.method == "segnet" or config.model is not None:
            raise
        logger.warning("no usable SegNet model was found; segmenting with the classic method instead")
        return _per_frame_segmenter(config.model_copy(update={"method": "classic"}), device, None)
    segmenter = SegNetSegmenter(
        SegNetSegmenterConfig(
            nucleus_diameter=config.nucleus_diameter,
            device=device,
            test_time_augmentation=config.test_time_augmentation,
        ),
        model=model,
    )
    segment = _significant_only(segmenter.segment, config)
    return "segnet", segment, segmenter.pixel_scale, config.nucleus_diameter  # type: ignore[return-value]


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
    segmenter = MovieSegmenter.build(config, device, images[len(images) // 2] if len(images) else None)
    method = segmenter.method
    timer = StageTimer()
    n = len(images)
    counts = []
    with atomic_output_dir(out_dir, overwrite) as tmp:
        frames = range(n) if progress is None else progress(range(n), n, "segment")
        segmented = segmenter.label_frames(images, frames)
        with timer.stage("segmentation"):
            for t, labels in enumerate(segmented):
                dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
                tifffile.imwrite(tmp / frame_name("mask", t, n), labels.astype(dtype), compression="zlib")
                counts.append(int(len(np.unique(labels)) - (labels == 0).any()))
        full = config.model_dump(mode="json") | {
            "method_used": method,
            "device": device,
            "nucleus_diameter_used": segmenter.nucleus_diameter,
        }
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
