"""attnzoo: plug-and-play attention and feature-fusion modules for computer vision.

    import attnzoo
    gate = attnzoo.create("cbam", 256)          # any registered module by name
    attnzoo.list_modules("channel")             # ['coord', 'eca', 'se', 'sk']
"""

from .registry import FAMILIES, LAYOUTS, ModuleInfo, create, info, list_modules, register
from .channel import CoordinateAttention, EfficientChannelAttention, SelectiveKernel, SqueezeExcite
from .spatial import CBAM, CBAMChannelGate, CBAMSpatialGate, TripletAttention
from .self_attention import *  # noqa: F401,F403  (each family file lists its public classes in __all__)
from .local import *  # noqa: F401,F403
from .fusion import *  # noqa: F401,F403
from .sequence import *  # noqa: F401,F403
from .temporal import *  # noqa: F401,F403
from .capture import capture_attention

from . import fusion as _fusion, local as _local, self_attention as _self_attention, sequence as _sequence, temporal as _temporal

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "LAYOUTS",
    "ModuleInfo",
    "create",
    "info",
    "list_modules",
    "register",
    "capture_attention",
    # channel
    "SqueezeExcite",
    "EfficientChannelAttention",
    "SelectiveKernel",
    "CoordinateAttention",
    # spatial
    "CBAM",
    "CBAMChannelGate",
    "CBAMSpatialGate",
    "TripletAttention",
]
__all__ += [*_self_attention.__all__, *_local.__all__, *_fusion.__all__, *_sequence.__all__, *_temporal.__all__]


def __getattr__(name: str):
    # Model-surgery helpers live in attnzoo.integrations (imported on first use, so `import attnzoo` stays light).
    if name in ("insert", "timm_attn"):
        from . import integrations

        return getattr(integrations, name)
    if name == "viz":  # matplotlib is imported only when a picture is drawn
        import importlib

        return importlib.import_module(".viz", __name__)
    raise AttributeError(f"module 'attnzoo' has no attribute {name!r}")
