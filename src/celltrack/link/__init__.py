"""Linking: detections (+ raw frames) to lineages.

:class:`Linker` (with :class:`LinkerConfig`) is the tracker's linking stage: a frame-to-frame sparse
assignment with motion, size and correlation-filter appearance costs, followed by a global pass that
closes gaps, calls divisions and removes short false daughter branches. :class:`HungarianLinker` is the
plain distance-only baseline.
"""

from celltrack.link.config import (
    AppearanceConfig,
    BirthDeathConfig,
    DivisionConfig,
    GapConfig,
    GlobalPassConfig,
    IntensityConfig,
    LinkerConfig,
    MotionConfig,
    SceneStatistics,
    SizeConfig,
    measure_scene,
)
from celltrack.link.hungarian import HungarianConfig, HungarianLinker, assign_frame_pair, link_hungarian
from celltrack.link.lap import solve_robust_assignment, solve_sparse_assignment
from celltrack.link.linker import Linker, link_tracks, measure_intensities

__all__ = [
    "AppearanceConfig",
    "BirthDeathConfig",
    "DivisionConfig",
    "GapConfig",
    "GlobalPassConfig",
    "HungarianConfig",
    "HungarianLinker",
    "IntensityConfig",
    "Linker",
    "LinkerConfig",
    "MotionConfig",
    "SceneStatistics",
    "SizeConfig",
    "assign_frame_pair",
    "link_hungarian",
    "link_tracks",
    "measure_intensities",
    "measure_scene",
    "solve_robust_assignment",
    "solve_sparse_assignment",
]
