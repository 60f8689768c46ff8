"""Fusion necks (pyramid and multi-input): one file per paper."""

from .aff import AttentionalFeatureFusion
from .afpn import AsymptoticFPN
from .asff import AdaptiveSpatialFeatureFusion
from .bifpn import BiFPN
from .fpn import FeaturePyramidNetwork
from .panet import PathAggregationNetwork
from .weighted_fusion import WeightedFusion

__all__ = [
    "AdaptiveSpatialFeatureFusion",
    "AsymptoticFPN",
    "AttentionalFeatureFusion",
    "BiFPN",
    "FeaturePyramidNetwork",
    "PathAggregationNetwork",
    "WeightedFusion",
]
