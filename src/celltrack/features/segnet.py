"""SegNet features for the correlation filters: four feature layers, computed once per frame, cropped."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from celltrack.features.base import FullFrameExtractor
from celltrack.models.panoptic import PanopticSegNet
from celltrack.models.registry import SegmentationModel, load_segmentation_model
from celltrack.models.segnet import DEFAULT_FEATURE_LAYER_WEIGHTS, SegNet

logger = logging.getLogger(__name__)


class SegNetFeatures(FullFrameExtractor):
    """Four SegNet feature layers (default weights 1.0/0.5/0.2/0.2).

    The default model (:class:`~celltrack.models.panoptic.PanopticSegNet`) gives its first two encoder
    levels and its last two decoder levels (:meth:`~celltrack.models.panoptic.PanopticSegNet.features`), the
    study model its convolution layers 1–4. Both are fully convolutional with "same" padding, so every map is
    pixel-aligned with the frame; maps are computed once per frame and every window is a crop of them
    (border windows are padded with each channel's background level).

    Parameters
    ----------
    model : PanopticSegNet or SegNet, optional
        The network (the shipped default model by default).
    member : int
        Ensemble member whose filters provide the features (study model).
    nucleus_diameter : float, optional
        Nucleus diameter in the frames (px); frames are rescaled to the model's scale and maps back.
    layer_weights : tuple of float
        Weights gamma_l of layers 1–4.
    device : str or torch.device
    cache : callable, optional
        ``cache(frame, compute) -> maps``: a memo (e.g. an on-disk zarr store, see
        :class:`celltrack.io.FeatureCache`) consulted before computing a frame's maps.
    """

    name = "segnet"

    def __init__(
        self,
        model: SegmentationModel | None = None,
        member: int = 0,
        nucleus_diameter: float | None = None,
        layer_weights: tuple[float, ...] = DEFAULT_FEATURE_LAYER_WEIGHTS,
        device: str | torch.device = "cpu",
        cache: Callable[[np.ndarray, Callable[[np.ndarray], list[np.ndarray]]], list[np.ndarray]]
        | None = None,
    ) -> None:
        if len(layer_weights) != 4:
            raise ValueError(f"SegNet features have 4 layers; got {len(layer_weights)} layer weights")
        self.device = torch.device(device)
        if model is None:
            model = load_segmentation_model(None, device=self.device)
        if not isinstance(model, SegNet | PanopticSegNet):
            raise TypeError(f"model must be a PanopticSegNet or SegNet, got {type(model).__name__}")
        self.model = model.to(self.device).eval()
        self.member = member
        self.nucleus_diameter = nucleus_diameter
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.cache = cache

    @property
    def layer_channels(self) -> tuple[int, ...]:
        """Channels of the four feature layers."""
        if isinstance(self.model, PanopticSegNet):
            return self.model.feature_channels
        return tuple(int(c) for c in self.model.config.channels[:4])

    def _compute(self, frame: np.ndarray) -> list[np.ndarray]:
        if isinstance(self.model, PanopticSegNet):
            return self.model.frame_features(frame, nucleus_diameter=self.nucleus_diameter)
        return self.model.frame_features(frame, member=self.member, nucleus_diameter=self.nucleus_diameter)

    def compute_maps(self, frame: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        """Full-frame maps of layers 1–4, each (C_l, Y, X) float32 on the extractor's device."""
        array = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
        if array.ndim != 2:
            raise ValueError(f"frame must be 2-D (Y, X), got shape {array.shape}")
        maps = self.cache(array, self._compute) if self.cache is not None else self._compute(array)
        return [torch.as_tensor(np.asarray(m, np.float32), device=self.device) for m in maps]
