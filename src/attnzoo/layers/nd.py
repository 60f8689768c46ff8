"""Layers by spatial rank: the one place that maps ``dims`` (1, 2, 3) to PyTorch's 1-D, 2-D and 3-D operators.

A module that supports ``dims=`` picks its convolution, pooling and norm here once, at construction, and does
not branch on ``dims`` anywhere else (plain tables, as timm's hiera ``conv_nd``, rather than MONAI's
string-keyed factory objects).  Maps are B×C×L (``dims=1``), B×C×H×W (2) and B×C×D×H×W (3).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .batchnorm import PooledBatchNorm2d, PooledBatchNorm3d, PooledBatchNormMap1d
from .checks import check_arg, odd_kernel, positive_int

__all__ = [
    "SPATIAL_RANKS",
    "AXES",
    "check_rank_arg",
    "check_channels_rank",
    "per_axis",
    "odd_kernel_nd",
    "conv_nd",
    "conv_fn",
    "max_pool_fn",
    "avg_pool_fn",
    "adaptive_avg_pool_fn",
    "adaptive_max_pool_fn",
    "batch_norm_nd",
    "linear_mode",
    "spatial_axes",
    "unit_shape",
    "as_map",
]

#: The spatial ranks of maps: B×C×L, B×C×H×W, B×C×D×H×W.
SPATIAL_RANKS = (1, 2, 3)
#: How messages and docstrings name the spatial axes of each rank.
AXES = {1: "L", 2: "H×W", 3: "D×H×W"}

_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_FN: dict[int, Callable[..., torch.Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAX_POOL: dict[int, Callable[..., torch.Tensor]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL: dict[int, Callable[..., torch.Tensor]] = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_ADAPTIVE_AVG: dict[int, Callable[..., torch.Tensor]] = {
    1: F.adaptive_avg_pool1d,
    2: F.adaptive_avg_pool2d,
    3: F.adaptive_avg_pool3d,
}
_ADAPTIVE_MAX: dict[int, Callable[..., torch.Tensor]] = {
    1: F.adaptive_max_pool1d,
    2: F.adaptive_max_pool2d,
    3: F.adaptive_max_pool3d,
}
#: BatchNorm over maps that also trains on one value per channel (attnzoo.layers.batchnorm).
_BATCH_NORM: dict[int, type[nn.Module]] = {1: PooledBatchNormMap1d, 2: PooledBatchNorm2d, 3: PooledBatchNorm3d}
_LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def check_rank_arg(dims: object, owner: str, supported: Sequence[int] = SPATIAL_RANKS) -> int:
    """The constructor's ``dims`` checked: one of ``supported`` (``ValueError`` naming them otherwise)."""
    ok = isinstance(dims, int) and not isinstance(dims, bool) and dims in supported
    check_arg(ok, owner, "dims", f"one of {tuple(supported)} (the spatial rank)", dims)
    return int(dims)  # type: ignore[call-overload]


def check_channels_rank(
    channels: object, dims: object, owner: str, supported: Sequence[int] = SPATIAL_RANKS
) -> tuple[int, int]:
    """An N-d constructor's ``(channels, dims)`` checked, in that order: ``channels`` a positive integer, ``dims``
    as :func:`check_rank_arg`."""
    return positive_int(channels, owner, "channels"), check_rank_arg(dims, owner, supported)


def per_axis(value: object, dims: int, owner: str, what: str) -> tuple[int, ...]:
    """An int (the same on every axis) or a ``dims``-tuple of ints (one per axis, e.g. ``(3, 7, 7)`` for a
    video's D×H×W) as a ``dims``-tuple.  A ``ValueError`` for anything else; each entry is checked by the caller."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * dims
    sides = tuple(value) if isinstance(value, (tuple, list)) else ()
    ok = len(sides) == dims and all(isinstance(v, int) and not isinstance(v, bool) for v in sides)
    check_arg(ok, owner, what, f"an int or a tuple of {dims} ints (one per axis of {AXES[dims]})", value)
    return sides


def odd_kernel_nd(kernel_size: object, dims: int, owner: str, what: str = "kernel_size") -> tuple[int, ...]:
    """:func:`per_axis` with each side a positive odd integer."""
    sides = per_axis(kernel_size, dims, owner, what)
    if isinstance(kernel_size, int):
        odd_kernel(kernel_size, owner, what)
    ok = all(k >= 1 and k % 2 == 1 for k in sides)
    check_arg(ok, owner, what, f"{dims} positive odd integers (one per axis of {AXES[dims]})", kernel_size)
    return sides


def conv_nd(dims: int) -> Any:
    """``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d``."""
    return _CONV[dims]


def conv_fn(dims: int) -> Callable[..., torch.Tensor]:
    """``F.conv1d``, ``F.conv2d`` or ``F.conv3d``."""
    return _CONV_FN[dims]


def max_pool_fn(dims: int) -> Callable[..., torch.Tensor]:
    """``F.max_pool{d}d``."""
    return _MAX_POOL[dims]


def avg_pool_fn(dims: int) -> Callable[..., torch.Tensor]:
    """``F.avg_pool{d}d``."""
    return _AVG_POOL[dims]


def adaptive_avg_pool_fn(dims: int) -> Callable[..., torch.Tensor]:
    """``F.adaptive_avg_pool{d}d`` (the export form of a mean over every spatial axis: ncnn refuses a multi-axis
    mean of a 5-D map)."""
    return _ADAPTIVE_AVG[dims]


def adaptive_max_pool_fn(dims: int) -> Callable[..., torch.Tensor]:
    """``F.adaptive_max_pool{d}d``."""
    return _ADAPTIVE_MAX[dims]


def batch_norm_nd(dims: int) -> Any:
    """The BatchNorm of B×C×(spatial) maps of rank ``dims`` that also trains on one value per channel
    (``PooledBatchNorm2d`` and its 1-D / 3-D siblings; same parameters and state-dict keys as ``nn.BatchNorm{d}d``)."""
    return _BATCH_NORM[dims]


def linear_mode(dims: int) -> str:
    """The ``F.interpolate`` mode of linear interpolation: ``"linear"``, ``"bilinear"`` or ``"trilinear"``."""
    return _LINEAR_MODE[dims]


def spatial_axes(x: torch.Tensor | int) -> tuple[int, ...]:
    """The spatial axes of a B×C×… map (or of maps of rank ``x`` when an int): ``(2,)``, ``(2, 3)``, ``(2, 3, 4)``."""
    ndim = x + 2 if isinstance(x, int) else x.dim()
    return tuple(range(2, ndim))


def unit_shape(dims: int) -> tuple[int, ...]:
    """``(1,) * dims``: the trailing shape of a per-channel gate (B×C×1×…×1) or a per-channel parameter."""
    return (1,) * dims


def as_map(v: torch.Tensor, dims: int) -> torch.Tensor:
    """A B×C vector as a B×C×1×…×1 map of rank ``dims`` (a view): a channel gate that broadcasts over the map."""
    return v[(slice(None), slice(None)) + (None,) * dims]  # v[:, :, None, None] in 2-D: unsqueezes, no reshape
