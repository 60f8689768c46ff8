"""Stateless, typed kernels shared by the modules (no ``nn.Module`` arguments): the pieces worth testing and
benchmarking on their own, and the ones reference implementations are compared against.

Public (``__all__``, documented in docs/api.md): the attention kernels, the mask preparation, the local
aggregation, CAM's channel attention, the sinusoidal table and the window grid.  The other helpers the modules
import from here (mask bookkeeping, window shifts) are internal and may change in any release.
"""

from .aggregation import cam_attention, local_aggregation
from .attention import explicit_attention, sdpa
from .masks import masked_attention, prepare_mask
from .pooling import adaptive_pool2d, pool_bins, unpool
from .positional import SINCOS_ORDERS, sincos_2d_table, sinusoidal_table
from .windows import window_grid

# isort: split
# Internal: imported by attnzoo's own modules; not public, may change in any release.
from .linear import relu_linear_attention  # noqa: F401
from .masks import check_broadcast, probabilities, zero_dead_queries  # noqa: F401
from .positional import grid_table  # noqa: F401
from .windows import axis_cover, axis_valid, fold_shifts, gather_shifts  # noqa: F401

__all__ = [
    "sdpa",
    "explicit_attention",
    "masked_attention",
    "prepare_mask",
    "local_aggregation",
    "cam_attention",
    "sinusoidal_table",
    "SINCOS_ORDERS",
    "sincos_2d_table",
    "pool_bins",
    "adaptive_pool2d",
    "unpool",
    "window_grid",
]
