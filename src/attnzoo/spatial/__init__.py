"""Spatial and hybrid gates: one file per paper."""

from .bam import BAM
from .caa import ContextAnchorAttention
from .cbam import CBAM, CBAMChannelGate, CBAMSpatialGate
from .cglu import ConvolutionalGLU
from .ela import EfficientLocalAttention
from .ema import EfficientMultiScaleAttention
from .gam import GlobalAttentionMechanism
from .lka import LargeKernelAttention
from .lsk import LargeSelectiveKernel
from .lska import LargeSeparableKernelAttention
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
    "ContextAnchorAttention",
    "ConvolutionalGLU",
    "EfficientLocalAttention",
    "EfficientMultiScaleAttention",
    "GlobalAttentionMechanism",
    "LargeKernelAttention",
    "LargeSelectiveKernel",
    "LargeSeparableKernelAttention",
    "PolarizedSelfAttention",
    "ShuffleAttention",
    "SimAM",
    "SpatialGroupEnhance",
    "TripletAttention",
]
