"""Spatial and hybrid gates: one file per paper."""

from .bam import BAM
from .cbam import CBAM, CBAMChannelGate, CBAMSpatialGate
from .ema import EfficientMultiScaleAttention
from .polarized import PolarizedSelfAttention
from .sge import SpatialGroupEnhance
from .shuffle_attention import ShuffleAttention
from .simam import SimAM
from .triplet import TripletAttention

__all__ = [
    "BAM",
    "CBAM",
    "CBAMChannelGate",
    "CBAMSpatialGate",
    "EfficientMultiScaleAttention",
    "PolarizedSelfAttention",
    "ShuffleAttention",
    "SimAM",
    "SpatialGroupEnhance",
    "TripletAttention",
]
