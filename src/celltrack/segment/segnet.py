"""The SegNet segmenter: SegNet class probabilities, a seeded watershed into instances, then (optionally)
each object grown to the image's local half-maximum."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from celltrack.models.segnet import SegNet, TestTimeAugmentation
from celltrack.segment.extent import ExtentConfig, grow_to_half_maximum
from celltrack.segment.instances import InstancesConfig, probabilities_to_instances

logger = logging.getLogger(__name__)


class SegNetSegmenterConfig(BaseModel):
    """Parameters of :class:`SegNetSegmenter` (lengths in pixels of the input frames)."""

    model_config = ConfigDict(extra="forbid")

    model_path: Path | None = Field(None, description="Model folder; None = the bundled default model.")
    nucleus_diameter: float | None = Field(
        None, gt=0, description="Nucleus diameter in the frames (px); None = as in the model's training."
    )
    tile_size: int = Field(512, ge=32, description="Largest tile side at model scale (bounds memory).")
    tile_margin: int | None = Field(
        None, ge=0, description="Tile overlap per side; None = receptive-field radius (exact tiling)."
    )
    device: str = Field("cpu", description="torch device, e.g. 'cpu' or 'cuda'.")
    # Off by default. 'flips' raised held-out SEG a little (HeLa 01 GT 0.873 -> 0.874, silver truth of
    # unseen frames 0-11 0.935 -> 0.937; SIM+ 01 0.874 -> 0.878; demo ±0.002) at 1.4 s instead of 0.5 s per
    # HeLa frame on one thread, but end to end it delays divisions where daughters touch: SIM+ 01 BC(0)
    # 0.857 -> 0.714, CT 0.714 -> 0.601 ('flip': 0.786, 0.634); demo LNK 0.851 -> 0.838
    # (benchmarks/segmentation.py --tta, benchmarks/tracking.py).
    test_time_augmentation: TestTimeAugmentation = Field(
        "none",
        description="Average the class probabilities over transforms of the input, each mapped back: "
        "'none'; 'flip' (left-right, 2 passes); 'flips' (left-right, up-down, both; 4 passes); 'd4' (those "
        "and their transposes; 8 passes). Time grows with the passes; the tracker's features are unchanged.",
    )
    instances: InstancesConfig = Field(default_factory=InstancesConfig)
    # Off here: run before the temporal merge split it fills the waist of merged nuclei and the split misses
    # some; the pipeline grows objects after the split instead (SegmentationConfig.grow).
    extent: ExtentConfig | None = Field(
        None,
        description="Grow each object over adjacent pixels above its local half-maximum between background "
        "and interior (grow_to_half_maximum); None = off.",
    )


class SegNetSegmenter:
    """Segment nuclei with a SegNet model.

    Parameters
    ----------
    config : SegNetSegmenterConfig, optional
    model : SegNet, optional
        An already loaded model (moved to ``config.device``); otherwise ``config.model_path`` is
        loaded on first use.
    """

    def __init__(self, config: SegNetSegmenterConfig | None = None, model: SegNet | None = None) -> None:
        self.config = config or SegNetSegmenterConfig()
        if model is not None and not isinstance(model, SegNet):
            raise TypeError(f"model must be a SegNet, got {type(model).__name__}")
        # Modules move in place: a given model runs where the config says.
        self._model = model.to(self.config.device) if model is not None else None

    @property
    def model(self) -> SegNet:
        """The SegNet in use (loaded lazily from ``config.model_path``)."""
        if self._model is None:
            self._model = SegNet.load(self.config.model_path, device=self.config.device)
        return self._model

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities of one frame.

        Parameters
        ----------
        image : numpy.ndarray, shape (Y, X)
            Raw frame, any numeric dtype.

        Returns
        -------
        numpy.ndarray, shape (3, Y, X), float32
            P(interior), P(boundary), P(background).
        """
        _check_frame(image)
        cfg = self.config
        return self.model.predict_frame(
            image,
            nucleus_diameter=cfg.nucleus_diameter,
            tile_size=cfg.tile_size,
            tile_margin=cfg.tile_margin,
            test_time_augmentation=cfg.test_time_augmentation,
        )

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Label the nuclei of one frame.

        Parameters
        ----------
        image : numpy.ndarray, shape (Y, X)
            Raw frame, any numeric dtype.

        Returns
        -------
        numpy.ndarray, shape (Y, X), int32
            Labels 1..K (0 = background).
        """
        cfg = self.config
        labels = probabilities_to_instances(self.probabilities(image), cfg.instances, self.pixel_scale)
        if cfg.extent is not None:
            labels = grow_to_half_maximum(labels, image, cfg.extent, self.pixel_scale)
        return labels

    @property
    def pixel_scale(self) -> float:
        """Frame pixels per model pixel: the instance step's lengths (set at model scale) are scaled by it."""
        diameter = self.config.nucleus_diameter
        return 1.0 if diameter is None else float(diameter) / self.model.config.nucleus_diameter

    def segment_sequence(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Label every frame of a sequence lazily, one (Y, X) int32 label image per frame."""
        for frame in frames:
            yield self.segment(np.asarray(frame))


def segment_segnet(image: np.ndarray, model: SegNet | None = None, **config: object) -> np.ndarray:
    """Functional wrapper: ``SegNetSegmenter(SegNetSegmenterConfig(**config), model).segment(image)``."""
    return SegNetSegmenter(SegNetSegmenterConfig(**config), model).segment(image)


def _check_frame(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array frame, got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(f"SegNetSegmenter expects a 2-D frame (Y, X), got shape {image.shape}")
