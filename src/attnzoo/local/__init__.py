"""Local and multi-scale attention: one file per paper."""

from .bra import BiLevelRoutingAttention
from .dcnv2 import ModulatedDeformConv
from .deformable_attention import DeformableAttention
from .multipole import MultipoleAttention, multipole_level_sizes
from .neighborhood import NeighborhoodAttention
from .outlook import OutlookAttention
from .window import LocalWindowAttention

__all__ = [
    "LocalWindowAttention",
    "OutlookAttention",
    "MultipoleAttention",
    "multipole_level_sizes",
    "NeighborhoodAttention",
    "BiLevelRoutingAttention",
    "ModulatedDeformConv",
    "DeformableAttention",
]
