"""Fusion necks (pyramid and multi-input): one file per paper."""

from .asff import AdaptiveSpatialFeatureFusion
from .fpn import FeaturePyramidNetwork
from .panet import PathAggregationNetwork

__all__ = ["FeaturePyramidNetwork", "PathAggregationNetwork", "AdaptiveSpatialFeatureFusion"]
