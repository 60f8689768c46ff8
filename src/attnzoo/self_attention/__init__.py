"""Global self-attention on feature maps: one file per paper."""

from .cgnl import CompactGeneralizedNonLocal
from .cot import ContextualTransformer
from .cross_layer_nonlocal import CrossLayerNonLocal
from .danet import DANetAttention, DANetChannelAttention, DANetPositionAttention
from .efficient_self_attention import EfficientSelfAttention
from .global_attention import GlobalAttention
from .nonlocal_block import NonLocalBlock
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
]
