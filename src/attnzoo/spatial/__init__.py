"""Spatial and hybrid gates: one file per paper."""

from .cbam import CBAM, CBAMChannelGate, CBAMSpatialGate
from .triplet import TripletAttention

__all__ = ["CBAM", "CBAMChannelGate", "CBAMSpatialGate", "TripletAttention"]
