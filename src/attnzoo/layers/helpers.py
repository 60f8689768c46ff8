"""Width arithmetic, token ↔ map views and the in-place rule."""

from __future__ import annotations

import torch

from ..tracing import fx_leaf, inplace_ok, traced_dim, traced_size
from .checks import check_arg, positive_int

__all__ = [
    "traced_size",
    "hidden_width",
    "inplace_ok",
    "to_tokens",
    "to_map",
    "split_heads",
    "merge_heads",
    "map_to_heads",
    "heads_to_map",
    "spread_count",
]


def hidden_width(
    channels: int,
    reduction: float,
    hidden_channels: int | None,
    min_hidden: int,
    owner: str,
    name: str = "hidden_channels",
    cap_floor: bool = True,
) -> int:
    """Bottleneck width: ``hidden_channels`` if given, else ``max(channels // reduction, min(min_hidden, channels), 1)``
    (``cap_floor=False``: ``max(channels // reduction, min_hidden, 1)``, the floor not capped at C, as Coordinate
    Attention's official ``mip``).

    The one width rule of the library's bottlenecks (``reduction`` a ratio, ``hidden_channels`` an explicit
    width, ``min_hidden`` the floor); never 0, so a small C never silently gives a constant gate.
    """
    positive_int(channels, owner, "channels")
    if hidden_channels is not None:
        return positive_int(hidden_channels, owner, name)
    ok = isinstance(reduction, (int, float)) and not isinstance(reduction, bool) and 0 < reduction < float("inf")
    check_arg(ok, owner, "reduction", "a positive finite number", reduction)
    check_arg(
        isinstance(min_hidden, int) and not isinstance(min_hidden, bool) and min_hidden >= 0,
        owner,
        "min_hidden",
        "a non-negative integer",
        min_hidden,
    )
    return max(int(channels // reduction), min(min_hidden, channels) if cap_floor else min_hidden, 1)


def to_tokens(x: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """B×C×H×W → B×N×C (row-major positions).  A free view for a channels_last input, one copy otherwise.

    Maps of spatial rank ``dims`` = 1 or 3 (B×C×L, B×C×D×H×W) go through B×C×N: no view of rank above 4 (ncnn).
    (``dims`` is the module's, not read from ``x``: a rank read from a traced tensor cannot steer FX.)"""
    if dims == 2:
        return x.permute(0, 2, 3, 1).flatten(1, 2)
    return x.flatten(2).transpose(1, 2)


@fx_leaf
def to_map(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """B×N×C' tokens → B×C'×H×W with the H×W of ``like``, in ``like``'s memory format (channels_last stays a view).

    Likewise B×C'×L and B×C'×D×H×W for maps ``like`` of another spatial rank (channels_last_3d stays a view)."""
    if like.dim() != 4:
        out = y.transpose(1, 2).unflatten(2, like.shape[2:])
        if like.dim() == 5 and like.is_contiguous(memory_format=torch.channels_last_3d) and not like.is_contiguous():
            return out
        return out.contiguous()
    b, _, h, w = like.shape
    out = y.reshape(b, h, w, y.shape[-1]).permute(0, 3, 1, 2)
    if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return out
    return out.contiguous()


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """B×N×(h·d) → B×h×N×d as a view: the last dimension keeps stride 1 (the fused SDPA kernels need it)."""
    return t.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(o: torch.Tensor) -> torch.Tensor:
    """B×h×N×d → B×N×(h·d)."""
    return o.transpose(1, 2).flatten(2)


def map_to_heads(t: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×1×(H·W)×C view (one head); stride-1 last dim for channels-last maps, copied otherwise.
    Any spatial rank: B×C×L and B×C×D×H×W give B×1×N×C."""
    return t.flatten(2).transpose(1, 2).unsqueeze(1)


def heads_to_map(y: torch.Tensor, *size: int) -> torch.Tensor:
    """B×1×(H·W)×C → B×C×H×W view (channels-last strides, no copy); ``size`` is the map's spatial sizes (H, W), or
    (L,) / (D, H, W) for the other ranks."""
    return y.squeeze(1).transpose(1, 2).unflatten(2, size)


@fx_leaf
def spread_count(x: torch.Tensor, dims: tuple[int, ...]) -> int:
    """``max(M - 1, 1)`` for the M elements of ``x`` over ``dims``: the unbiased variance's divisor, kept at 1
    when M = 1 (a single value has no spread: its squared deviation is 0, so 0 / 1 = 0 instead of 0 / 0)."""
    m = 1
    for d in dims:
        m *= traced_dim(x, d)  # a plain int under torch.jit.trace: no tensor comparison in max()
    return max(m - 1, 1)
