"""Pooling primitives shared by several modules (each the fastest exact form measured on CPU)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tracing import eager_only
from .checks import fx_leaf
from .helpers import inplace_ok
from .nd import adaptive_max_pool_fn, batch_norm_nd, conv_nd, max_pool_fn, odd_kernel_nd, spatial_axes

__all__ = [
    "max_over",
    "z_pool",
    "ZPoolGate",
    "max_pool_2x2_ceil",
    "max_pool_ceil",
    "pad_to_multiple",
    "avg_reduce",
    "max_pool_3x3_s2",
    "MaxPool3x3s2",
]


def max_over(x: torch.Tensor, dims: int | tuple[int, ...]) -> torch.Tensor:
    """Maximum over ``dims`` (dropped): one axis, or every spatial axis of a B×C×… map of any rank ((2, 3) for
    B×C×H×W).  Without autograd ``amax`` (the fastest forward); with autograd a max with indices, whose backward scatters through the indices where ``amax``'s builds full-size equality
    masks.  Same values either way."""
    if inplace_ok():
        return x.amax(dims)
    if isinstance(dims, int):
        return x.max(dims).values
    rank = len(dims)  # not x.dim(): x may be an FX proxy
    if rank not in (1, 2, 3) or dims != spatial_axes(rank):
        raise ValueError(
            f"max_over: dims must be one dimension or every spatial dim of a map, (2,), (2, 3) or (2, 3, 4), got {dims}"
        )
    return adaptive_max_pool_fn(rank)(x, 1).flatten(1)


def z_pool(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Concatenate [max, mean] over ``dim`` as two channels at dim 1 (the official CBAM / Triplet order)."""
    return torch.stack([max_over(x, dim), x.mean(dim)], dim=1)


class ZPoolGate(nn.Module):
    """σ(BN(Conv_k×k([max; mean]))) on a 2-channel pooled map: the gate of CBAM's spatial half and of Triplet.

    Conv without bias, BatchNorm(1, eps 1e-5, momentum 0.01) as the official code; ``zero_init`` sets the BN
    weight to 0 as the official ResNet builders do for the spatial gate (the gate starts at σ(0) = 0.5).
    ``in_channels=1`` and ``momentum=0.1``: timm's light CBAM, whose pooled map is one channel ½(mean + max).
    ``dims``: the spatial rank of the pooled map (k^d conv, zero padded); ``kernel_size`` an odd int or one odd
    side per axis (e.g. ``(3, 7, 7)`` for a video's D×H×W).
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, ...],
        zero_init: bool,
        owner: str,
        in_channels: int = 2,
        momentum: float = 0.01,
        dims: int = 2,
    ) -> None:
        super().__init__()
        sides = odd_kernel_nd(kernel_size, dims, owner)
        padding = tuple(k // 2 for k in sides)
        k: int | tuple[int, ...] = kernel_size if isinstance(kernel_size, int) else sides
        p: int | tuple[int, ...] = padding[0] if isinstance(kernel_size, int) else padding
        self.conv = conv_nd(dims)(in_channels, 1, k, padding=p, bias=False)
        self.bn = batch_norm_nd(dims)(1, eps=1e-5, momentum=momentum)
        if zero_init:
            nn.init.zeros_(self.bn.weight)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.conv(pooled)))


def max_pool_2x2_ceil(x: torch.Tensor) -> torch.Tensor:
    """2×2 stride-2 max-pool with ``ceil_mode``: odd sizes keep their last row/column (floor pooling drops it),
    and a 1×1 map stays 1×1.  Equal to plain 2×2 pooling on even sizes."""
    return F.max_pool2d(x, 2, 2, ceil_mode=True)


def max_pool_ceil(x: torch.Tensor, kernel: tuple[int, ...]) -> torch.Tensor:
    """Max-pool with kernel = stride = ``kernel`` (one entry per spatial axis of ``x``: ``(2,)``, ``(2, 2)``,
    ``(1, 2, 2)``) and ``ceil_mode``: odd sizes keep their last slice, an axis of size 1 stays 1.  With ``(2, 2)``
    it is :func:`max_pool_2x2_ceil`."""
    return max_pool_fn(len(kernel))(x, kernel, kernel, ceil_mode=True)


@fx_leaf
def pad_to_multiple(x: torch.Tensor, r: int) -> torch.Tensor:
    """Zero-pad B×C×H×W at the bottom/right so that H and W are multiples of ``r`` (at least ``r``).

    The padding is written ``(r - H % r) % r`` (non-negative operands only): exporters that evaluate the
    equivalent ``(-H) % r`` with C semantics get a negative pad, i.e. a crop.
    """
    ph, pw = (r - x.shape[2] % r) % r, (r - x.shape[3] % r) % r
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph))


def avg_reduce(x: torch.Tensor, r: int) -> torch.Tensor:
    """Non-overlapping r×r average pooling that keeps partial windows, averaging over their valid pixels only.

    Equals ``F.avg_pool2d(x, r)`` when r divides H and W; a map smaller than r pools to its mean.
    (``ceil_mode`` with ``count_include_pad=False`` divides each border window by its real pixel count.)
    """
    return F.avg_pool2d(x, r, r, ceil_mode=True, count_include_pad=False)


@fx_leaf
def max_pool_3x3_s2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 3, stride=2, padding=1)``.

    When no gradient is needed it is computed as separable maxima of stride-2 views of the (-inf)-padded map:
    the same values, faster than PyTorch's CPU ``max_pool2d`` on NCHW maps (which also computes argmax
    indices).  With autograd, and in every recorded graph (ncnn has no step slices), it is ``F.max_pool2d``
    itself (the official op and its gradient).
    """
    if (x.requires_grad and torch.is_grad_enabled()) or not eager_only(x):
        return F.max_pool2d(x, 3, 2, 1)
    ho, wo = (x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2
    xp = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
    y = torch.maximum(
        torch.maximum(xp[..., 0 : 2 * ho : 2, :], xp[..., 1 : 2 * ho + 1 : 2, :]), xp[..., 2 : 2 * ho + 2 : 2, :]
    )
    return torch.maximum(torch.maximum(y[..., 0 : 2 * wo : 2], y[..., 1 : 2 * wo + 1 : 2]), y[..., 2 : 2 * wo + 2 : 2])


class MaxPool3x3s2(nn.MaxPool2d):
    """``nn.MaxPool2d(3, stride=2, padding=1)`` running :func:`max_pool_3x3_s2` (faster without autograd)."""

    def __init__(self) -> None:
        super().__init__(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_3x3_s2(x)
