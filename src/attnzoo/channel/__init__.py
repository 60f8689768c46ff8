"""Channel attention: one file per paper."""

from .coord import CoordinateAttention
from .eca import EfficientChannelAttention, eca_kernel_size
from .se import SqueezeExcite
from .sk import SelectiveKernel

__all__ = ["SqueezeExcite", "EfficientChannelAttention", "SelectiveKernel", "CoordinateAttention", "eca_kernel_size"]
