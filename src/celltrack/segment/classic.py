"""The no-model segmenter: smoothing, (log-)Otsu threshold, distance-transform watershed.

It needs no weights, so it is the fallback when no SegNet model is available and the
baseline that SegNet is measured against.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed

logger = logging.getLogger(__name__)


class ClassicConfig(BaseModel):
    """Parameters of :class:`ClassicSegmenter` (lengths in pixels)."""

    model_config = ConfigDict(extra="forbid")

    smoothing_sigma: float = Field(1.5, ge=0, description="Gaussian smoothing before thresholding (px).")
    threshold: Literal["otsu", "log-otsu"] = Field(
        "log-otsu", description="Otsu on intensities, or on log intensities (better for dim nuclei)."
    )
    nucleus_diameter: float = Field(
        20.0, gt=0, description="Typical nucleus diameter (px); sets seed spacing."
    )
    min_area: int = Field(20, ge=0, description="Objects smaller than this (px) are removed.")
    split_touching: bool = Field(True, description="Split touching nuclei by a distance-transform watershed.")


class ClassicSegmenter:
    """Segment nuclei without a model.

    Parameters
    ----------
    config : ClassicConfig, optional
    """

    def __init__(self, config: ClassicConfig | None = None) -> None:
        self.config = config or ClassicConfig()

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Label the nuclei of one frame.

        Parameters
        ----------
        image : numpy.ndarray, shape (Y, X)
            Raw fluorescence frame, any real dtype.

        Returns
        -------
        numpy.ndarray, shape (Y, X), int32
            Labels 1..K (0 = background). An empty or flat frame gives all zeros.
        """
        if image.ndim != 2:
            raise ValueError(f"ClassicSegmenter expects a 2-D frame, got shape {image.shape}")
        cfg = self.config
        data = np.asarray(image, np.float32)
        if not np.isfinite(data).all():
            raise ValueError("ClassicSegmenter: the frame contains NaN or inf values")
        smooth = ndi.gaussian_filter(data, cfg.smoothing_sigma) if cfg.smoothing_sigma > 0 else data
        # Subtracting a low percentile removes the camera offset so log-Otsu sees the real contrast.
        background = np.percentile(smooth, 1.0)
        signal = smooth - background
        if float(signal.max()) <= 1e-6 * max(1.0, abs(float(background))):
            return np.zeros(image.shape, np.int32)
        values = np.log1p(np.clip(signal, 0, None)) if cfg.threshold == "log-otsu" else signal
        try:
            level = threshold_otsu(values)
        except ValueError:
            return np.zeros(image.shape, np.int32)
        foreground = values > level
        foreground = ndi.binary_opening(foreground, iterations=1)
        foreground = ndi.binary_fill_holes(foreground)
        if cfg.min_area:
            foreground = remove_small_objects(foreground, max_size=cfg.min_area - 1)
        if not foreground.any():
            return np.zeros(image.shape, np.int32)
        if not cfg.split_touching:
            labels, _ = ndi.label(foreground)
            return labels.astype(np.int32)
        distance = ndi.distance_transform_edt(foreground)
        distance = ndi.gaussian_filter(distance, 1.0)
        components, _ = ndi.label(foreground)
        min_distance = max(2, round(cfg.nucleus_diameter * 0.35))
        peaks = peak_local_max(distance, min_distance=min_distance, labels=components, exclude_border=False)
        markers = np.zeros(image.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        labels = watershed(-distance, markers, mask=foreground)
        # Components that got no peak (thin shapes) still count as one nucleus each.
        orphan = foreground & (labels == 0)
        if orphan.any():
            extra, _n_extra = ndi.label(orphan)
            labels = np.where(orphan, extra + labels.max(), labels)
        if cfg.min_area:
            areas = np.bincount(labels.ravel())
            small = areas < cfg.min_area
            small[0] = False
            labels[small[labels]] = 0
        return _consecutive(labels)


def _consecutive(labels: np.ndarray) -> np.ndarray:
    present = np.unique(labels)
    present = present[present > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    return lut[labels]


def segment_classic(image: np.ndarray, **config: object) -> np.ndarray:
    """Functional wrapper: ``ClassicSegmenter(ClassicConfig(**config)).segment(image)``."""
    return ClassicSegmenter(ClassicConfig(**config)).segment(image)
