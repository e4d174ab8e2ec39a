"""Segmentation: SegNet probabilities → seeded-watershed instances, and the classic no-model fallback."""

from celltrack.segment.classic import ClassicConfig, ClassicSegmenter, segment_classic
from celltrack.segment.extent import ExtentConfig, grow_to_half_maximum
from celltrack.segment.instances import InstancesConfig, probabilities_to_instances
from celltrack.segment.merges import MergeSplitConfig, MergeSplitter, split_merged_nuclei
from celltrack.segment.segnet import SegNetSegmenter, SegNetSegmenterConfig, segment_segnet

__all__ = [
    "ClassicConfig",
    "ClassicSegmenter",
    "ExtentConfig",
    "InstancesConfig",
    "MergeSplitConfig",
    "MergeSplitter",
    "SegNetSegmenter",
    "SegNetSegmenterConfig",
    "grow_to_half_maximum",
    "probabilities_to_instances",
    "segment_classic",
    "segment_segnet",
    "split_merged_nuclei",
]
