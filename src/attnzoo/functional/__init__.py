"""Stateless, typed kernels shared by the modules (no ``nn.Module`` arguments): the pieces worth testing and
benchmarking on their own, and the ones reference implementations are compared against."""

from .aggregation import cam_attention, local_aggregation
from .attention import explicit_attention, sdpa
from .masks import (
    check_broadcast,
    masked_attention,
    prepare_mask,
    probabilities,
    zero_dead_queries,
)
from .pooling import adaptive_pool2d, pool_bins, unpool
from .positional import SINCOS_ORDERS, grid_table, sincos_2d_table, sinusoidal_table
from .windows import axis_cover, axis_valid, fold_shifts, gather_shifts, window_grid

__all__ = [
    "sdpa",
    "explicit_attention",
    "local_aggregation",
    "cam_attention",
    "check_broadcast",
    "prepare_mask",
    "masked_attention",
    "probabilities",
    "zero_dead_queries",
    "sinusoidal_table",
    "grid_table",
    "SINCOS_ORDERS",
    "sincos_2d_table",
    "pool_bins",
    "adaptive_pool2d",
    "unpool",
    "window_grid",
    "axis_valid",
    "axis_cover",
    "gather_shifts",
    "fold_shifts",
]
