"""attnzoo: plug-and-play attention and feature-fusion modules for computer vision.

import attnzoo
gate = attnzoo.create("cbam", 256)          # any registered module by name
attnzoo.list_modules("channel")             # ['coord', 'eca', 'se', 'sk', ...]
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import Any

from . import channel, fusion, local, resample, self_attention, sequence, spatial, temporal
from .capture import capture_attention
from .channel import (
    SCSE,
    CoordinateAttention,
    EffectiveSqueezeExcite,
    EfficientChannelAttention,
    GatedChannelTransform,
    GatherExcite,
    GlobalContextBlock,
    MultiSpectralAttention,
    SelectiveKernel,
    SqueezeExcite,
)
from .fusion import (
    AdaptiveSpatialFeatureFusion,
    AsymptoticFPN,
    AttentionalFeatureFusion,
    BiFPN,
    FeaturePyramidNetwork,
    PathAggregationNetwork,
    WeightedFusion,
)
from .local import (
    BiLevelRoutingAttention,
    DeformableAttention,
    LocalWindowAttention,
    ModulatedDeformConv,
    MultipoleAttention,
    NeighborhoodAttention,
    OutlookAttention,
)
from .registry import FAMILIES, LAYOUTS, ModuleInfo, ShapeRule, create, info, list_modules, register
from .resample import (
    CARAFE,
    DySample,
    SPDConv,
)
from .self_attention import (
    AxialAttention,
    CompactGeneralizedNonLocal,
    ContextualTransformer,
    CrissCrossAttention,
    CrossLayerNonLocal,
    DANetAttention,
    DANetChannelAttention,
    DANetPositionAttention,
    DoubleAttention,
    EfficientSelfAttention,
    ExternalAttention,
    GlobalAttention,
    HaloAttention,
    NonLocalBlock,
    SAGANAttention,
    SelfAttentionBlock,
    SpatialSelfAttention,
)
from .sequence import (
    MultiHeadSelfAttention,
    PositionalEncoding,
    PositionalEncoding2D,
    SimplifiedMultiHeadAttention,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from .spatial import (
    BAM,
    CBAM,
    CBAMChannelGate,
    CBAMSpatialGate,
    ContextAnchorAttention,
    EfficientLocalAttention,
    EfficientMultiScaleAttention,
    GlobalAttentionMechanism,
    LargeKernelAttention,
    LargeSelectiveKernel,
    LargeSeparableKernelAttention,
    PolarizedSelfAttention,
    ShuffleAttention,
    SimAM,
    SpatialGroupEnhance,
    TripletAttention,
)
from .temporal import (
    DilatedInception,
    GatedTemporalConv,
)
from .tracing import export_target

try:
    __version__ = _version("attnzoo")  # one version source: pyproject.toml
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "FAMILIES",
    "LAYOUTS",
    "ModuleInfo",
    "ShapeRule",
    "create",
    "info",
    "list_modules",
    "register",
    "capture_attention",
    "export_target",
    "insert",
    "timm_attn",
    "AdaptiveSpatialFeatureFusion",
    "AsymptoticFPN",
    "AttentionalFeatureFusion",
    "AxialAttention",
    "BAM",
    "BiFPN",
    "BiLevelRoutingAttention",
    "CARAFE",
    "CBAM",
    "CBAMChannelGate",
    "CBAMSpatialGate",
    "CompactGeneralizedNonLocal",
    "ContextAnchorAttention",
    "ContextualTransformer",
    "CoordinateAttention",
    "CrissCrossAttention",
    "CrossLayerNonLocal",
    "DANetAttention",
    "DANetChannelAttention",
    "DANetPositionAttention",
    "DeformableAttention",
    "DilatedInception",
    "DoubleAttention",
    "DySample",
    "EffectiveSqueezeExcite",
    "EfficientChannelAttention",
    "EfficientLocalAttention",
    "EfficientMultiScaleAttention",
    "EfficientSelfAttention",
    "ExternalAttention",
    "FeaturePyramidNetwork",
    "GatedChannelTransform",
    "GatedTemporalConv",
    "GatherExcite",
    "GlobalAttention",
    "GlobalAttentionMechanism",
    "GlobalContextBlock",
    "HaloAttention",
    "LargeKernelAttention",
    "LargeSelectiveKernel",
    "LargeSeparableKernelAttention",
    "LocalWindowAttention",
    "ModulatedDeformConv",
    "MultiHeadSelfAttention",
    "MultiSpectralAttention",
    "MultipoleAttention",
    "NeighborhoodAttention",
    "NonLocalBlock",
    "OutlookAttention",
    "PathAggregationNetwork",
    "PolarizedSelfAttention",
    "PositionalEncoding",
    "PositionalEncoding2D",
    "SAGANAttention",
    "SCSE",
    "SPDConv",
    "SelectiveKernel",
    "SelfAttentionBlock",
    "ShuffleAttention",
    "SimAM",
    "SimplifiedMultiHeadAttention",
    "SpatialGroupEnhance",
    "SpatialSelfAttention",
    "SqueezeExcite",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TripletAttention",
    "WeightedFusion",
]
_FAMILY_PACKAGES = (channel, spatial, self_attention, local, fusion, resample, sequence, temporal)


def __getattr__(name: str) -> Any:
    # Model-surgery helpers live in attnzoo.integrations (imported on first use, so `import attnzoo` stays light).
    if name in ("insert", "timm_attn"):
        from . import integrations

        return getattr(integrations, name)
    if name == "viz":  # matplotlib is imported only when a picture is drawn
        import importlib

        return importlib.import_module(".viz", __name__)
    raise AttributeError(f"module 'attnzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"insert", "timm_attn", "viz"})
