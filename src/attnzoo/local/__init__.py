"""Local and multi-scale attention: one file per paper."""

from .deformable_attention import DeformableAttention
from .dcnv2 import ModulatedDeformConv
from .bra import BiLevelRoutingAttention
from .neighborhood import NeighborhoodAttention
from .multipole import MultipoleAttention, multipole_level_sizes
from .outlook import OutlookAttention
from .window import LocalWindowAttention

__all__ = ["LocalWindowAttention", "OutlookAttention", "MultipoleAttention", "multipole_level_sizes", "NeighborhoodAttention", "BiLevelRoutingAttention", "ModulatedDeformConv", "DeformableAttention"]
