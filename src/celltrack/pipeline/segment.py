"""Segmentation stage of the pipeline: choose the segmenter, run it frame by frame, write label images."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
from pydantic import BaseModel, ConfigDict, Field, field_validator

from celltrack.io import ImageSequence, atomic_output_dir, frame_name, open_sequence
from celltrack.io.provenance import RECORD_NAME, StageTimer, dumps_record, run_record, sequence_fingerprint
from celltrack.models.panoptic import DiameterEstimate, PanopticSegNet
from celltrack.models.segnet import TestTimeAugmentation
from celltrack.segment import drop_insignificant_objects
from celltrack.segment.classic import ClassicConfig, ClassicSegmenter
from celltrack.segment.merges import MergeSplitConfig, MergeSplitter
from celltrack.segment.segnet import SegNetSegmenterConfig

logger = logging.getLogger(__name__)

#: A movie, or one frame of it: an ImageSequence, a (T, Y, X) or (Y, X) array, or a list of frames.
Movie = ImageSequence | np.ndarray | Sequence[np.ndarray]


class SegmentationConfig(BaseModel):
    """Which segmenter runs, and its parameters.

    ``method="auto"`` uses SegNet with ``model`` (or the model shipped with celltrack) and falls
    back to the classic segmenter, with a warning, only when no model can be loaded.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["auto", "segnet", "classic"] = Field("auto", description="Segmentation method.")
    model: Path | None = Field(
        None,
        description="SegNet model: 'default' (None), 'study' (the study's 5-layer network) or a folder.",
    )
    nucleus_diameter: float | Literal["auto"] | None = Field(
        "auto",
        description="Nucleus diameter in the movie (px), used to rescale frames to the model's scale; 'auto' "
        "measures it with the default model's size head on diameter_frames frames spread through the movie "
        "(the classic segmenter's median object on one frame for the study and classic methods); None = use "
        "frames as they are.",
    )
    diameter_frames: int = Field(
        5, ge=1, description="Frames, spread evenly through the movie, on which the diameter is measured."
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


def estimate_diameter(frame: np.ndarray) -> float | None:
    """Median equivalent diameter (px) of the nuclei the classic segmenter finds in ``frame`` (study and
    classic methods; the default model measures it with its size head, :func:`measure_diameter`)."""
    labels = ClassicSegmenter().segment(frame)
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return float(2 * np.sqrt(np.median(areas) / np.pi)) if len(areas) else None


def spread_frames(n_frames: int, count: int) -> list[int]:
    """``count`` frame numbers spread evenly through a movie of ``n_frames`` (all of them when fewer)."""
    if n_frames <= count:
        return list(range(n_frames))
    if count == 1:
        return [n_frames // 2]
    return sorted({round(i * (n_frames - 1) / (count - 1)) for i in range(count)})


def measure_diameter(
    model: PanopticSegNet, movie: Movie, count: int = 5
) -> DiameterEstimate:
    """The movie's nucleus diameter from the model's size head on ``count`` frames spread through it.

    An unstable estimate (frames that disagree, no nuclei, an iteration that does not settle) is logged as
    a warning with the measured values and the fix (``--nucleus-diameter``).
    """
    frames = _as_frames(movie)
    numbers = spread_frames(len(frames), count)
    estimate = model.estimate_diameter([np.asarray(frames[t]) for t in numbers], numbers)
    per_frame = ", ".join(f"{v:.1f}" if np.isfinite(v) else "none" for v in estimate.per_frame)
    if not np.isfinite(estimate.diameter):
        logger.warning(
            "nucleus diameter: no nuclei found in frames %s; segmenting at the model's own scale. If nuclei "
            "are there, give their diameter with --nucleus-diameter PX", numbers,
        )
    elif not estimate.stable:
        logger.warning(
            "nucleus diameter %.1f px is uncertain (frames %s: %s px; %s); check a frame and give "
            "--nucleus-diameter PX if it is wrong", estimate.diameter, numbers, per_frame,
            "; ".join(estimate.notes),
        )
    else:
        logger.info("nucleus diameter %.1f px (frames %s: %s px)", estimate.diameter, numbers, per_frame)
    return estimate


def build_segmenter(
    config: SegmentationConfig, device: str = "cpu", sample: Movie | None = None
) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """The per-frame segmentation function a config asks for, and the name of the method actually used.

    Parameters
    ----------
    config : SegmentationConfig
    device : str
    sample : ImageSequence, numpy.ndarray (T, Y, X) or (Y, X), or list of frames, optional
        The movie (or one frame of it), to measure the nucleus diameter when it is ``"auto"``.
    """
    segmenter = MovieSegmenter.build(config, device, sample)
    return segmenter.method, segmenter.segment


class MovieSegmenter:
    """A movie's frames in order → labels: the per-frame segmenter, then the temporal merge split.

    Parameters
    ----------
    segment : callable
        ``segment(frame (Y, X)) -> labels (Y, X)`` for one frame.
    config : SegmentationConfig
        ``merge_split`` is used here.
    method : str
        Name of the method behind ``segment`` (recorded in ``celltrack.json``).
    nucleus_diameter : float, optional
        Nucleus diameter the segmenter works with (px; recorded in ``celltrack.json``).
    diameter_estimate : DiameterEstimate, optional
        How the diameter was measured, when it was (recorded in ``celltrack.json``).
    """

    def __init__(
        self,
        segment: Callable[[np.ndarray], np.ndarray],
        config: SegmentationConfig,
        method: str = "segnet",
        nucleus_diameter: float | None = None,
        diameter_estimate: DiameterEstimate | None = None,
    ) -> None:
        self.segment = segment
        self.config = config
        self.method = method
        self.nucleus_diameter = nucleus_diameter
        self.diameter_estimate = diameter_estimate
        self.splitter = MergeSplitter(config.merge_split)

    @classmethod
    def build(
        cls, config: SegmentationConfig, device: str = "cpu", sample: Movie | None = None
    ) -> MovieSegmenter:
        """The segmenter a config asks for (see :func:`build_segmenter`)."""
        built = _per_frame_segmenter(config, device, sample)
        return cls(built.segment, config, built.method, built.diameter, built.estimate)

    def record(self) -> dict[str, Any]:
        """What the run record says about the segmenter: method, diameter and how it was measured."""
        out: dict[str, Any] = {"method_used": self.method, "nucleus_diameter_used": self.nucleus_diameter}
        if self.diameter_estimate is not None:
            out["nucleus_diameter_estimate"] = self.diameter_estimate.as_dict()
        return out

    def label_frames(self, images: ImageSequence | np.ndarray, frames: Iterable[int]) -> Iterator[np.ndarray]:
        """Labels of ``frames`` (consecutive, in order), each after the merge split.

        Parameters
        ----------
        images : ImageSequence or numpy.ndarray, shape (T, Y, X)
        frames : iterable of int
            Frame numbers in order (e.g. wrapped in a progress bar).

        Yields
        ------
        numpy.ndarray, shape (Y, X)
        """
        segmented = (self.segment(np.asarray(images[t])) for t in frames)
        # split_movie yields each frame as soon as it has read it: one frame's labels wait at a time.
        yield from self.splitter.split_movie(segmented)


@dataclass
class _Built:
    method: str
    segment: Callable[[np.ndarray], np.ndarray]
    diameter: float | None
    estimate: DiameterEstimate | None = None


def _per_frame_segmenter(config: SegmentationConfig, device: str, movie: Movie | None) -> _Built:
    """The per-frame function a config asks for, with the diameter it works at."""
    from celltrack.models.registry import load_segmentation_model
    from celltrack.segment.segnet import SegNetSegmenter

    model = None
    if config.method != "classic":
        try:
            model = load_segmentation_model(config.model, device=device)
        except ValueError:
            if config.method == "segnet" or config.model is not None:
                raise
            logger.warning("no usable SegNet model was found; segmenting with the classic method instead")
            config = config.model_copy(update={"method": "classic"})
    estimate = None
    if config.nucleus_diameter == "auto":
        diameter = None
        if movie is not None and isinstance(model, PanopticSegNet):
            estimate = measure_diameter(model, movie, config.diameter_frames)
            diameter = estimate.diameter if np.isfinite(estimate.diameter) else None
        elif movie is not None:
            frames = _as_frames(movie)
            diameter = estimate_diameter(np.asarray(frames[len(frames) // 2])) if len(frames) else None
            logger.info("nucleus diameter measured on a frame: %s px",
                        f"{diameter:.1f}" if diameter else "none")
        config = config.model_copy(update={"nucleus_diameter": diameter})
    if model is None:
        classic = config.classic
        if config.nucleus_diameter is not None:
            classic = classic.model_copy(update={"nucleus_diameter": config.nucleus_diameter})
        segment = _significant_only(ClassicSegmenter(classic).segment, config)
        return _Built("classic", segment, config.nucleus_diameter, estimate)  # type: ignore[arg-type]
    segmenter = SegNetSegmenter(
        SegNetSegmenterConfig(
            nucleus_diameter=config.nucleus_diameter,
            device=device,
            test_time_augmentation=config.test_time_augmentation,
        ),
        model=model,
    )
    segment = _significant_only(segmenter.segment, config)
    return _Built("segnet", segment, config.nucleus_diameter, estimate)  # type: ignore[arg-type]


def _as_frames(movie: Movie) -> Any:
    """A movie as something indexable by frame: a single 2-D frame becomes a one-frame movie."""
    if isinstance(movie, np.ndarray) and movie.ndim == 2:
        return movie[None]
    return movie


def significance_filter(config: SegmentationConfig) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """``filter(labels, frame) -> labels`` as the pipeline drops noise blobs, or None when switched off.

    The background ring is a nucleus diameter wide when the config gives one (at least 3 px).
    """
    if config.min_significance == 0:
        return None
    diameter = config.nucleus_diameter if isinstance(config.nucleus_diameter, float | int) else None
    ring_width = max(3, round(diameter)) if diameter else None

    def drop(labels: np.ndarray, frame: np.ndarray) -> np.ndarray:
        return drop_insignificant_objects(labels, frame, config.min_significance, ring_width)

    return drop


def _significant_only(
    segment: Callable[[np.ndarray], np.ndarray], config: SegmentationConfig
) -> Callable[[np.ndarray], np.ndarray]:
    """``segment`` followed by :func:`significance_filter` (when switched on)."""
    drop = significance_filter(config)
    if drop is None:
        return segment

    def segment_significant(frame: np.ndarray) -> np.ndarray:
        return drop(segment(frame), frame)

    return segment_significant


def model_checksums(config: SegmentationConfig, method: str) -> dict[str, str]:
    """Checksums of the weights a segmentation run used (for ``celltrack.json``)."""
    if method != "segnet":
        return {}
    from celltrack.io.provenance import file_checksum
    from celltrack.models.registry import segmentation_model_path

    weights = segmentation_model_path(config.model) / "weights.pt"
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
    segmenter = MovieSegmenter.build(config, device, images if len(images) else None)
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
        full = config.model_dump(mode="json") | segmenter.record() | {"device": device}
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
