"""Segmentation: SegNet probabilities → seeded-watershed instances, and the classic no-model fallback."""

from celltrack.segment.classic import ClassicConfig, ClassicSegmenter, segment_classic
from celltrack.segment.instances import InstancesConfig, probabilities_to_instances
from celltrack.segment.segnet import SegNetSegmenter, SegNetSegmenterConfig, segment_segnet

__all__ = [
    "ClassicConfig",
    "ClassicSegmenter",
    "InstancesConfig",
    "SegNetSegmenter",
    "SegNetSegmenterConfig",
    "probabilities_to_instances",
    "segment_classic",
    "segment_segnet",
]
