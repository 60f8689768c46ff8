"""Channel attention: one file per paper."""

from .coord import CoordinateAttention
from .eca import EfficientChannelAttention, eca_kernel_size
from .ese import EffectiveSqueezeExcite
from .fca import MultiSpectralAttention
from .gc import GlobalContextBlock
from .gct import GatedChannelTransform
from .ge import GatherExcite
from .scse import SCSE
from .se import SqueezeExcite
from .sk import SelectiveKernel

__all__ = [
    "SCSE",
    "CoordinateAttention",
    "EffectiveSqueezeExcite",
    "EfficientChannelAttention",
    "GatedChannelTransform",
    "GatherExcite",
    "GlobalContextBlock",
    "MultiSpectralAttention",
    "SelectiveKernel",
    "SqueezeExcite",
    "eca_kernel_size",
]
