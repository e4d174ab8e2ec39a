"""The SegNet segmenter: the network's maps, then instances.

With the default model (:class:`~celltrack.models.panoptic.PanopticSegNet`) instances come from a watershed
seeded at the maxima of the predicted inner distance (:func:`~celltrack.segment.distance_to_instances`);
with the study model (:class:`~celltrack.models.SegNet`) from its class probabilities
(:func:`~celltrack.segment.probabilities_to_instances`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from celltrack.models.panoptic import PanopticSegNet
from celltrack.models.registry import SegmentationModel, load_segmentation_model
from celltrack.models.segnet import SegNet, TestTimeAugmentation
from celltrack.segment.instances import (
    DistanceInstancesConfig,
    InstancesConfig,
    distance_to_instances,
    probabilities_to_instances,
)

logger = logging.getLogger(__name__)


class SegNetSegmenterConfig(BaseModel):
    """Parameters of :class:`SegNetSegmenter` (lengths in pixels of the input frames)."""

    model_config = ConfigDict(extra="forbid")

    model_path: Path | None = Field(
        None, description="Model folder, or 'default' / 'study' for a shipped model; None = 'default'."
    )
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
        "and their transposes; 8 passes). Time grows with the passes; the tracker's features are unchanged. "
        "Study model only.",
    )
    instances: InstancesConfig = Field(
        default_factory=InstancesConfig, description="Instances from class probabilities (study model)."
    )
    distance_instances: DistanceInstancesConfig = Field(
        default_factory=DistanceInstancesConfig,
        description="Instances from the inner distance (default model).",
    )


class SegNetSegmenter:
    """Segment nuclei with a SegNet model.

    Parameters
    ----------
    config : SegNetSegmenterConfig, optional
    model : PanopticSegNet or SegNet, optional
        An already loaded model (moved to ``config.device``); otherwise ``config.model_path`` is
        loaded on first use.
    """

    def __init__(
        self, config: SegNetSegmenterConfig | None = None, model: SegmentationModel | None = None
    ) -> None:
        self.config = config or SegNetSegmenterConfig()
        if model is not None and not isinstance(model, SegNet | PanopticSegNet):
            raise TypeError(f"model must be a PanopticSegNet or SegNet, got {type(model).__name__}")
        # Modules move in place: a given model runs where the config says.
        self._model = model.to(self.config.device) if model is not None else None
        self._check_tta()

    @property
    def model(self) -> SegmentationModel:
        """The network in use (loaded lazily from ``config.model_path``)."""
        if self._model is None:
            self._model = load_segmentation_model(self.config.model_path, device=self.config.device)
            self._check_tta()
        return self._model

    def _check_tta(self) -> None:
        if isinstance(self._model, PanopticSegNet) and self.config.test_time_augmentation != "none":
            raise ValueError(
                "test_time_augmentation is available for the study model only; set it to 'none' or use "
                "--model study"
            )

    def maps(self, image: np.ndarray) -> np.ndarray:
        """The network's maps of one frame at its resolution, (C, Y, X) float32: the three class
        probabilities, then (default model) the inner distance and the log size."""
        _check_frame(image)
        model = self.model
        if isinstance(model, PanopticSegNet):
            return model.predict_frame(image, nucleus_diameter=self.config.nucleus_diameter)
        return self.probabilities(image)

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
        if isinstance(self.model, PanopticSegNet):
            return self.maps(image)[:3]
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
        if isinstance(self.model, PanopticSegNet):
            return distance_to_instances(self.maps(image), cfg.distance_instances, self.pixel_scale)
        return probabilities_to_instances(self.probabilities(image), cfg.instances, self.pixel_scale)

    @property
    def pixel_scale(self) -> float:
        """Frame pixels per model pixel: the instance step's lengths (set at model scale) are scaled by it."""
        diameter = self.config.nucleus_diameter
        return 1.0 if diameter is None else float(diameter) / self.model.config.nucleus_diameter

    def segment_sequence(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Label every frame of a sequence lazily, one (Y, X) int32 label image per frame."""
        for frame in frames:
            yield self.segment(np.asarray(frame))


def segment_segnet(image: np.ndarray, model: SegmentationModel | None = None, **config: object) -> np.ndarray:
    """Functional wrapper: ``SegNetSegmenter(SegNetSegmenterConfig(**config), model).segment(image)``."""
    return SegNetSegmenter(SegNetSegmenterConfig(**config), model).segment(image)


def _check_frame(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array frame, got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(f"SegNetSegmenter expects a 2-D frame (Y, X), got shape {image.shape}")
