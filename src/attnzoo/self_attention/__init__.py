"""Global self-attention on feature maps: one file per paper."""

from .aifi import AIFI
from .area_attention import A2C2f, AreaAttention
from .axial import AxialAttention
from .cgnl import CompactGeneralizedNonLocal
from .cot import ContextualTransformer
from .criss_cross import CrissCrossAttention
from .cross_layer_nonlocal import CrossLayerNonLocal
from .danet import DANetAttention, DANetChannelAttention, DANetPositionAttention
from .double_attention import DoubleAttention
from .efficient_self_attention import EfficientSelfAttention
from .external_attention import ExternalAttention
from .global_attention import GlobalAttention
from .halo import HaloAttention
from .nonlocal_block import NonLocalBlock
from .psa import C2PSA, PSA
from .sagan import SAGANAttention
from .self_attention_block import SelfAttentionBlock
from .spatial_self_attention import SpatialSelfAttention

__all__ = [
    "NonLocalBlock",
    "SAGANAttention",
    "DANetPositionAttention",
    "DANetChannelAttention",
    "DANetAttention",
    "CompactGeneralizedNonLocal",
    "CrossLayerNonLocal",
    "GlobalAttention",
    "SpatialSelfAttention",
    "EfficientSelfAttention",
    "SelfAttentionBlock",
    "ContextualTransformer",
    "CrissCrossAttention",
    "DoubleAttention",
    "ExternalAttention",
    "AxialAttention",
    "HaloAttention",
    "AIFI",
    "AreaAttention",
    "A2C2f",
    "PSA",
    "C2PSA",
]
