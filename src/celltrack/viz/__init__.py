"""Visualisation: the live tracking view and its movie (the study's Figure 1).

matplotlib and imageio are imported only when a view is rendered, so importing this package is cheap.
"""

from celltrack.viz.live import (
    LiveViewer,
    TrackingView,
    ViewConfig,
    crop_window,
    render_frame,
    stretch_contrast,
)
from celltrack.viz.video import VIDEO_SUFFIXES, VideoWriter, write_video

__all__ = [
    "VIDEO_SUFFIXES",
    "LiveViewer",
    "TrackingView",
    "VideoWriter",
    "ViewConfig",
    "crop_window",
    "render_frame",
    "stretch_contrast",
    "write_video",
]
