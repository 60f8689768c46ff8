"""Window geometry and the shifted-view gather / fold pair used by windowed attention.

A window is ``kernel`` pixels wide and windows start every ``stride`` pixels; the last one reaches the end of
the axis, so every position is covered (the axis is zero-padded as needed).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..tracing import for_runtime
from .attention import sdpa

__all__ = [
    "window_grid",
    "axis_valid",
    "axis_cover",
    "gather_shifts",
    "fold_shifts",
    "partition_windows",
    "merge_windows",
    "split_group_heads",
    "merge_group_heads",
    "grouped_attention",
    "grouped_self_attention",
    "partition_windows_last",
    "merge_windows_last",
    "roll_shift",
    "shifted_window_mask",
]


def window_grid(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Windows along one axis of length ``size``: ``(count, padded_length)``.

    Windows start at 0, stride, 2·stride, ... and the last one reaches the end of the axis, so every position
    is covered; an axis shorter than the kernel gets one (padded) window.  Written with non-negative operands
    only (``ceil((size - kernel) / stride)`` as ``(size - kernel + stride - 1) // stride``): exporters and
    runtimes disagree on the rounding of a negative integer division.
    """
    count = 1 if size <= kernel else (size - kernel + stride - 1) // stride + 1
    return count, (count - 1) * stride + kernel


def axis_valid(count: int, kernel: int, stride: int, size: int, device: torch.device) -> torch.Tensor:
    """count×kernel bool: is offset i of window a inside the axis (not padding)?"""
    pos = torch.arange(count, device=device)[:, None] * stride + torch.arange(kernel, device=device)[None, :]
    return pos < size


def axis_cover(count: int, kernel: int, stride: int, size: int, device: torch.device) -> torch.Tensor:
    """Number of windows covering each position of the axis (length ``size``)."""
    y = torch.arange(size, device=device)
    hi = torch.clamp(torch.div(y, stride, rounding_mode="floor"), max=count - 1)
    lo = torch.clamp(torch.div(y - kernel + stride, stride, rounding_mode="floor"), min=0)
    return hi - lo + 1


def _gather(t: torch.Tensor, kernel: int, stride: int, gh: int, gw: int) -> torch.Tensor:
    """Windows by shifted strided views: t B×Hb×Wb×…×F → B×gh×gw×…×k²×F, entry (i, j, …, (dy, dx)) = t[i·s+dy, j·s+dx]."""
    span_h, span_w = stride * (gh - 1) + 1, stride * (gw - 1) + 1
    views = [t[:, dy : dy + span_h : stride, dx : dx + span_w : stride] for dy in range(kernel) for dx in range(kernel)]
    return torch.stack(views, dim=-2)


def _fold(y: torch.Tensor, kernel: int, stride: int, hb: int, wb: int) -> torch.Tensor:
    """The adjoint of :func:`_gather` (``F.fold``): y B×gh×gw×…×k²×F → B×hb×wb×…×F, overlaps summed."""
    gh, gw = y.shape[1], y.shape[2]
    span_h, span_w = stride * (gh - 1) + 1, stride * (gw - 1) + 1
    out = y.new_zeros((y.shape[0], hb, wb) + tuple(y.shape[3:-2]) + (y.shape[-1],))
    for i, (dy, dx) in enumerate((dy, dx) for dy in range(kernel) for dx in range(kernel)):
        out[:, dy : dy + span_h : stride, dx : dx + span_w : stride] += y[..., i, :]
    return out


class _Shifts(torch.autograd.Function):
    """:func:`_gather` (``gather=True``) or :func:`_fold` with the other one as the backward: they
    are each other's adjoint, so each gradient is one stack or one pass of shifted adds (autograd of the k²
    slices would zero-fill a full-size gradient per slice)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gather: bool, kernel: int, stride: int, h: int, w: int) -> torch.Tensor:  # type: ignore[override]
        ctx.adjoint = (not gather, kernel, stride, x.shape[1], x.shape[2])
        return (_gather if gather else _fold)(x, kernel, stride, h, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _shifts(grad, *ctx.adjoint), None, None, None, None, None


def _shifts(x: torch.Tensor, gather: bool, kernel: int, stride: int, h: int, w: int) -> torch.Tensor:
    """:class:`_Shifts` when a gradient is needed (eager, ``torch.compile``); plain ops otherwise and in graphs
    recorded for an export target (``torch.jit.trace`` cannot record an ``autograd.Function`` called with traced
    sizes)."""
    if for_runtime() or not (torch.is_grad_enabled() and x.requires_grad):
        return (_gather if gather else _fold)(x, kernel, stride, h, w)
    return _Shifts.apply(x, gather, kernel, stride, h, w)


def gather_shifts(t: torch.Tensor, kernel: int, stride: int, gh: int, gw: int) -> torch.Tensor:
    """:func:`_gather` with the cheap backward (one :func:`_fold`)."""
    return _shifts(t, True, kernel, stride, gh, gw)


def fold_shifts(y: torch.Tensor, kernel: int, stride: int, hb: int, wb: int) -> torch.Tensor:
    """:func:`_fold` with the cheap backward (one :func:`_gather`)."""
    return _shifts(y, False, kernel, stride, hb, wb)


# Rank-5 forms (batch kept as its own axis, at most 5 axes): what ncnn (via pnnx) can run.  ncnn has no batch axis and
# at most 4 axes besides it, so windows and heads are never folded into the batch and no view has 6 axes.


def partition_windows(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """B×C×H×W (H, W multiples of ``kernel``) → B×(H/k·W/k)×k²×C window tokens (row-major windows and offsets),
    through views of at most 5 axes."""
    b, c, h, w = x.shape
    nh, nw = h // kernel, w // kernel
    t = x.reshape(b, c, nh, kernel, w).permute(0, 2, 3, 4, 1)  # B×nh×k×W×C
    t = t.reshape(b, nh, kernel, nw, kernel * c).permute(0, 1, 3, 2, 4)  # B×nh×nw×k×(k·C)
    return t.reshape(b, nh * nw, kernel * kernel, c)


def merge_windows(t: torch.Tensor, kernel: int, nh: int, nw: int) -> torch.Tensor:
    """The inverse of :func:`partition_windows`: B×(nh·nw)×k²×C → B×C×(nh·k)×(nw·k)."""
    b, c = t.shape[0], t.shape[-1]
    t = t.reshape(b, nh, nw, kernel, kernel * c).permute(0, 1, 3, 2, 4)  # B×nh×k×nw×(k·C)
    return t.reshape(b, nh * kernel, nw * kernel, c).permute(0, 3, 1, 2)


def split_group_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """B×G×L×(heads·d) → B×(G·heads)×L×d: groups and heads on one axis (SDPA on 4 axes)."""
    b, g, length, inner = t.shape
    d = inner // heads
    return t.reshape(b, g, length, heads, d).permute(0, 1, 3, 2, 4).reshape(b, g * heads, length, d)


def merge_group_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """The inverse of :func:`split_group_heads`: B×(G·heads)×L×d → B×G×L×(heads·d)."""
    b, gh, length, d = t.shape
    g = gh // heads
    return t.reshape(b, g, heads, length, d).permute(0, 1, 3, 2, 4).reshape(b, g, length, heads * d)


#: ``attend(q, k, v, scale=…, dropout_p=…)``: dot-product attention on B×h×L×d (``sdpa``, or a module's
#: ``layers.attention`` with its capture key bound).
Attend = Callable[..., torch.Tensor]


def grouped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    scale: float,
    valid: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    attend: Attend = sdpa,
) -> torch.Tensor:
    """Multi-head attention inside G independent groups of tokens (windows, blocks, rows), written for runtimes
    without a batch axis to fold the groups into (ncnn: at most 4 axes besides the batch): groups and heads
    share one axis of a 4-axis SDPA call and no view has more than 5 axes.

    q: B×G×Lq×(heads·d), k: B×G×Lk×(heads·d), v: B×G×Lk×(heads·dv) → B×G×Lq×(heads·dv).  ``valid``: G×Lk bool
    (False: the key never takes part, e.g. padding) or None.  Masked keys get one more q/k column, 1 · (the
    dtype's most negative finite value × scale): after the scale a logit below −1e36 whose probability is
    exactly 0, without ``masked_fill`` (ncnn has none) or a (G·heads)×Lq×Lk mask constant (ncnn's SDPA does not
    broadcast its mask).
    """
    b, g, lq = q.shape[0], q.shape[1], q.shape[2]
    if heads > 1:
        q, k, v = split_group_heads(q, heads), split_group_heads(k, heads), split_group_heads(v, heads)
    if valid is not None:
        lk = valid.shape[-1]
        penalty = (~valid).to(q.dtype) * (torch.finfo(q.dtype).min * scale)  # G×Lk
        penalty = penalty[:, None, :, None].expand(-1, heads, -1, -1).reshape(1, g * heads, lk, 1)
        q = torch.cat([q, q.new_ones(1, 1, 1, 1).expand(b, g * heads, lq, 1)], dim=-1)
        k = torch.cat([k, penalty.expand(b, -1, -1, -1)], dim=-1)
    out = attend(q, k, v, scale=scale, dropout_p=dropout_p)
    return merge_group_heads(out, heads) if heads > 1 else out


def grouped_self_attention(
    t: torch.Tensor,
    to_qkv: Callable[[torch.Tensor], torch.Tensor],
    to_out: Callable[[torch.Tensor], torch.Tensor],
    heads: int,
    scale: float,
    valid: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    attend: Attend = sdpa,
) -> torch.Tensor:
    """Multi-head self-attention inside G groups of tokens, t: B×G×L×C → B×G×L×C': ``to_qkv`` (C → 3·heads·d,
    q | k | v), :func:`grouped_attention`, ``to_out`` (heads·d → C').  The projections run on B×(G·L)×C tokens:
    a Linear on 4 axes becomes, in ncnn, a Gemm followed by a shape-referencing reshape that costs 20× the Gemm.
    """
    b, g, length, c = t.shape
    qkv = to_qkv(t.reshape(b, g * length, c)).reshape(b, g, length, -1)
    q, k, v = qkv.chunk(3, dim=-1)
    out = grouped_attention(q, k, v, heads, scale, valid, dropout_p, attend)
    return to_out(out.reshape(b, g * length, -1)).reshape(b, g, length, -1)


# Swin's shifted windows: the channels-last partition, the cyclic roll and the mask of the rolled padded grid.


def partition_windows_last(t: torch.Tensor, kernel: int) -> torch.Tensor:
    """B×H×W×C (H, W multiples of ``kernel``) → B×(H/k·W/k)×k²×C window tokens (row-major windows and offsets),
    through views of at most 5 axes (the channels-last twin of :func:`partition_windows`)."""
    b, h, w, c = t.shape
    nh, nw = h // kernel, w // kernel
    t = t.reshape(b, nh, kernel, nw, kernel * c).permute(0, 1, 3, 2, 4)  # B×nh×nw×k×(k·C)
    return t.reshape(b, nh * nw, kernel * kernel, c)


def merge_windows_last(t: torch.Tensor, kernel: int, nh: int, nw: int) -> torch.Tensor:
    """The inverse of :func:`partition_windows_last`: B×(nh·nw)×k²×C → B×(nh·k)×(nw·k)×C."""
    b, c = t.shape[0], t.shape[-1]
    t = t.reshape(b, nh, nw, kernel, kernel * c).permute(0, 1, 3, 2, 4)  # B×nh×k×nw×(k·C)
    return t.reshape(b, nh * kernel, nw * kernel, c)


def roll_shift(t: torch.Tensor, shift: int, dims: tuple[int, ...], reverse: bool = False) -> torch.Tensor:
    """Swin's cyclic shift: ``torch.roll(t, -shift, dims)`` (``reverse``: ``+shift``, its inverse), written as one
    split and one concatenation per axis (ONNX Slice + Concat; pnnx keeps a split, while it drops ``narrow``).
    Entry i of a rolled axis of length n is entry (i + shift) mod n of ``t``."""
    for dim in dims:
        n = t.shape[dim]
        s = shift % n
        if s == 0:
            continue
        first = n - s if reverse else s
        head, tail = t.split([first, n - first], dim)
        t = torch.cat([tail, head], dim)
    return t


def shifted_window_mask(
    hp: int, wp: int, h: int, w: int, kernel: int, shift: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(H'/k·W'/k)×k²×k² additive mask of Swin's (shifted) windows on the zero-padded H'×W' grid (H' ≥ h,
    W' ≥ w multiples of ``kernel``), rolled by :func:`roll_shift` (``shift``): 0 where the key may be attended,
    the dtype's most negative finite value where the key is padding (outside h×w) or, with a shift, lies in
    another region of the rolled grid than the query (the wrapped-around pieces: the official slices
    [0, H'−k), [H'−k, H'−shift), [H'−shift, H') per axis).  Padded queries (cut off afterwards) attend the
    padding of their window, so that no row is fully masked (no NaN in a backward pass).  Padding first and rolling the padded grid puts the
    wrap seam on a region border, so a shifted window is exactly the window offset by ``shift`` without wrap.
    """
    ys = torch.arange(hp, device=device)
    xs = torch.arange(wp, device=device)
    if shift:
        region_y = (ys >= hp - kernel).long() + (ys >= hp - shift).long()
        region_x = (xs >= wp - kernel).long() + (xs >= wp - shift).long()
        oy, ox = (ys + shift) % hp, (xs + shift) % wp  # the padded-grid position each rolled entry holds
    else:
        region_y, region_x, oy, ox = torch.zeros_like(ys), torch.zeros_like(xs), ys, xs
    label = region_y[:, None] * 3 + region_x[None, :]
    label = torch.where((oy < h)[:, None] & (ox < w)[None, :], label, torch.full_like(label, -1))  # -1: padding
    lab = partition_windows_last(label[None, :, :, None], kernel)[0, :, :, 0]  # nW×L
    blocked = lab[:, :, None] != lab[:, None, :]  # padding is a region of its own: no row is fully blocked
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(blocked, torch.full((), torch.finfo(dtype).min, dtype=dtype, device=device), zero)
