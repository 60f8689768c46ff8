"""Spatial and hybrid gates: one file per paper."""

from .caa import ContextAnchorAttention
from .cbam import CBAM, CBAMChannelGate, CBAMSpatialGate
from .ela import EfficientLocalAttention
from .gam import GlobalAttentionMechanism
from .lka import LargeKernelAttention
from .lsk import LargeSelectiveKernel
from .lska import LargeSeparableKernelAttention
from .triplet import TripletAttention

__all__ = [
    "CBAM",
    "CBAMChannelGate",
    "CBAMSpatialGate",
    "ContextAnchorAttention",
    "EfficientLocalAttention",
    "GlobalAttentionMechanism",
    "LargeKernelAttention",
    "LargeSelectiveKernel",
    "LargeSeparableKernelAttention",
    "TripletAttention",
]
