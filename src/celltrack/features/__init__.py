"""Feature extractors for the correlation filters: the interface, window cropping and the ``raw`` features."""

from celltrack.features.base import (
    FeatureExtractor,
    FullFrameExtractor,
    as_frame_array,
    as_frame_tensor,
    background_fill,
    crop_windows,
    detect_recentred,
    from_grid,
    standardise_windows,
    to_grid,
)
from celltrack.features.raw import RawConfig, RawExtractor, extract_raw_windows, raw_feature_maps

__all__ = [
    "FeatureExtractor",
    "FullFrameExtractor",
    "RawConfig",
    "RawExtractor",
    "as_frame_array",
    "as_frame_tensor",
    "background_fill",
    "crop_windows",
    "detect_recentred",
    "extract_raw_windows",
    "from_grid",
    "raw_feature_maps",
    "standardise_windows",
    "to_grid",
]
