"""The study's per-cell correlation-filter tracker (``celltrack cf-track``)."""

from celltrack.cftrack.tracker import CFTracker, CFTrackerConfig, CFTrackResult, FrameState, cf_track

__all__ = ["CFTrackResult", "CFTracker", "CFTrackerConfig", "FrameState", "cf_track"]
