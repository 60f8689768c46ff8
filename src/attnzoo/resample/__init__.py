"""Resamplers (B×C×H×W in, resized B×C'×H'×W' out): one file per paper."""

from .carafe import CARAFE
from .dysample import DySample
from .spd_conv import SPDConv

__all__ = ["CARAFE", "DySample", "SPDConv"]
