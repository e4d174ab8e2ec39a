"""Segmentation: SegNet probabilities → seeded-watershed instances, the classic no-model fallback, and
object-level clean-up (noise blobs, merged nuclei)."""

from celltrack.segment.classic import ClassicConfig, ClassicSegmenter, segment_classic
from celltrack.segment.contrast import drop_insignificant_objects, object_significance
from celltrack.segment.instances import (
    DistanceInstancesConfig,
    InstancesConfig,
    distance_to_instances,
    probabilities_to_instances,
)
from celltrack.segment.merges import MergeSplitConfig, MergeSplitter, split_merged_nuclei
from celltrack.segment.segnet import SegNetSegmenter, SegNetSegmenterConfig, segment_segnet

__all__ = [
    "ClassicConfig",
    "ClassicSegmenter",
    "DistanceInstancesConfig",
    "InstancesConfig",
    "MergeSplitConfig",
    "MergeSplitter",
    "SegNetSegmenter",
    "SegNetSegmenterConfig",
    "distance_to_instances",
    "drop_insignificant_objects",
    "object_significance",
    "probabilities_to_instances",
    "segment_classic",
    "segment_segnet",
    "split_merged_nuclei",
]
