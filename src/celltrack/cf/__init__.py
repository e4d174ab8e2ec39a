"""Batched hierarchical correlation filters (train, detect, update, PSR) in pure torch."""

from celltrack.cf.filters import (
    ROW_BLOCK,
    CFConfig,
    CFDetection,
    FilterBank,
    correlation_responses,
    default_device,
    detect_displacements,
    gaussian_target,
    locate_peaks,
    max_over_steps,
    peak_to_sidelobe,
    row_blocks,
    sample_circular,
    signed_index,
    train_filters,
    window_spectra,
)
from celltrack.cf.windows import as_centres, hann_window, taper_window, window_origins

__all__ = [
    "ROW_BLOCK",
    "CFConfig",
    "CFDetection",
    "FilterBank",
    "as_centres",
    "correlation_responses",
    "default_device",
    "detect_displacements",
    "gaussian_target",
    "hann_window",
    "locate_peaks",
    "max_over_steps",
    "peak_to_sidelobe",
    "row_blocks",
    "sample_circular",
    "signed_index",
    "taper_window",
    "train_filters",
    "window_origins",
    "window_spectra",
]
