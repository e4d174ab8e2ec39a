"""Pipelines that chain the stages and touch the file system: tracking, the demo."""

from celltrack.pipeline.track import TrackingConfig, TrackingResult, load_config, run_tracking

__all__ = ["TrackingConfig", "TrackingResult", "load_config", "run_tracking"]
