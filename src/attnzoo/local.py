"""Local and multi-scale attention: window attention, Outlook attention (VOLO), Multipole attention (MANO).

All three modules take and return B×C×H×W (any memory format).  Window attention partitions the map straight
from B×C×H×W into window-major tokens (one copy) and writes the result straight back (one copy); Outlook
attention works channels-last inside (its projections are per-pixel linear layers; one permute of a contiguous
input, a free view of a ``channels_last`` one) and returns a B×C×H×W view with channels-last strides.

* :class:`LocalWindowAttention` — multi-head self-attention inside k×k windows (seed 000 ``LocalAttention2D``,
  MANO's local attention).  Non-overlapping windows are a reshape partition, overlapping ones k² shifted
  strided views stacked once (and summed back by shifted adds); sizes that do not divide are zero-padded and
  the padded positions are masked out as keys.
* :class:`OutlookAttention` — VOLO's outlook attention (attention weights generated from the centre token,
  overlapping window outputs summed), with ``F.fold`` replaced by shifted adds.
* :class:`MultipoleAttention` — MANO's multipole attention: one local attention applied on a hierarchy of
  down-sampled grids, merged by a V-cycle; linear cost with a global receptive field.

The shape-dependent parts (padding, window counts, number of levels) live in functions registered with
``torch.fx.wrap`` so that ``torch.fx.symbolic_trace`` keeps them as single graph nodes; ``torch.jit.trace``,
``torch.compile`` and ``torch.export`` see through them.
"""

from __future__ import annotations


import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from . import layers
from .capture import is_capturing, record
from .registry import register

__all__ = ["LocalWindowAttention", "OutlookAttention", "MultipoleAttention"]

_MANO_PAPER = "Linear Attention with Global Context: A Multipole Attention Mechanism for Vision and Physics (Colagrande, Caillon, Feillet, Allauzen; arXiv 2025)"
_MANO_URL = "https://arxiv.org/abs/2507.02748"


# ----------------------------------------------------------------------------------------------------------------
# window geometry
# ----------------------------------------------------------------------------------------------------------------


def window_grid(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Windows along one axis of length ``size``: ``(count, padded_length)``.

    Windows start at 0, stride, 2·stride, ... and the last one reaches the end of the axis, so every position
    is covered; an axis shorter than the kernel gets one (padded) window.
    """
    count = 1 if size <= kernel else -(-(size - kernel) // stride) + 1
    return count, (count - 1) * stride + kernel


def _axis_valid(count: int, kernel: int, stride: int, size: int, device: torch.device) -> torch.Tensor:
    """count×kernel bool: is offset i of window a inside the axis (not padding)?"""
    pos = torch.arange(count, device=device)[:, None] * stride + torch.arange(kernel, device=device)[None, :]
    return pos < size


def _axis_cover(count: int, kernel: int, stride: int, size: int, device: torch.device) -> torch.Tensor:
    """Number of windows covering each position of the axis (length ``size``)."""
    y = torch.arange(size, device=device)
    hi = torch.clamp(torch.div(y, stride, rounding_mode="floor"), max=count - 1)
    lo = torch.clamp(torch.div(y - kernel + stride, stride, rounding_mode="floor"), min=0)
    return hi - lo + 1


def _gather_shifts(t: torch.Tensor, kernel: int, stride: int, gh: int, gw: int) -> torch.Tensor:
    """Windows by shifted strided views: t B×Hb×Wb×…×F → B×gh×gw×…×k²×F, entry (i, j, …, (dy, dx)) = t[i·s+dy, j·s+dx]."""
    span_h, span_w = stride * (gh - 1) + 1, stride * (gw - 1) + 1
    views = [t[:, dy : dy + span_h : stride, dx : dx + span_w : stride] for dy in range(kernel) for dx in range(kernel)]
    return torch.stack(views, dim=-2)


def _fold_shifts(y: torch.Tensor, kernel: int, stride: int, hb: int, wb: int) -> torch.Tensor:
    """The adjoint of :func:`_gather_shifts` (``F.fold``): y B×gh×gw×…×k²×F → B×hb×wb×…×F, overlaps summed."""
    gh, gw = y.shape[1], y.shape[2]
    span_h, span_w = stride * (gh - 1) + 1, stride * (gw - 1) + 1
    out = y.new_zeros((y.shape[0], hb, wb) + tuple(y.shape[3:-2]) + (y.shape[-1],))
    for i, (dy, dx) in enumerate((dy, dx) for dy in range(kernel) for dx in range(kernel)):
        out[:, dy : dy + span_h : stride, dx : dx + span_w : stride] += y[..., i, :]
    return out


class _Shifts(torch.autograd.Function):
    """:func:`_gather_shifts` (``gather=True``) or :func:`_fold_shifts` with the other one as the backward: they
    are each other's adjoint, so each gradient is one stack or one pass of shifted adds (autograd of the k²
    slices would zero-fill a full-size gradient per slice)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gather: bool, kernel: int, stride: int, h: int, w: int) -> torch.Tensor:  # type: ignore[override]
        ctx.adjoint = (not gather, kernel, stride, x.shape[1], x.shape[2])
        return (_gather_shifts if gather else _fold_shifts)(x, kernel, stride, h, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _shifts(grad, *ctx.adjoint), None, None, None, None, None


def _shifts(x: torch.Tensor, gather: bool, kernel: int, stride: int, h: int, w: int) -> torch.Tensor:
    """:class:`_Shifts` when a gradient is needed; plain ops otherwise and under ``torch.jit.trace`` (which cannot
    record an ``autograd.Function`` called with traced sizes)."""
    if torch.jit.is_tracing() or not (torch.is_grad_enabled() and x.requires_grad):
        return (_gather_shifts if gather else _fold_shifts)(x, kernel, stride, h, w)
    return _Shifts.apply(x, gather, kernel, stride, h, w)


def gather_shifts(t: torch.Tensor, kernel: int, stride: int, gh: int, gw: int) -> torch.Tensor:
    """:func:`_gather_shifts` with the cheap backward (one :func:`_fold_shifts`)."""
    return _shifts(t, True, kernel, stride, gh, gw)


def fold_shifts(y: torch.Tensor, kernel: int, stride: int, hb: int, wb: int) -> torch.Tensor:
    """:func:`_fold_shifts` with the cheap backward (one :func:`_gather_shifts`)."""
    return _shifts(y, False, kernel, stride, hb, wb)


class _WindowSelfAttention(nn.Module):
    """Multi-head self-attention over the tokens of each window (MANO ``LocalAttention2D`` + ``AttentionBlock``).

    ``LayerNorm`` (``norm``, LocalAttention2D) then ``LayerNorm`` again (``attn_norm``, AttentionBlock: the
    reference normalises twice), qkv projection without bias, softmax(q kᵀ · dim_head^-0.5) with dropout, and the
    output projection (an identity when heads = 1 and dim_head = C, as the reference).
    """

    def __init__(self, channels: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head, self.dropout = heads, dim_head, dropout
        self.norm = nn.LayerNorm(channels)
        self.attn_norm = nn.LayerNorm(channels)
        self.to_qkv = nn.Linear(channels, 3 * inner, bias=False)
        project_out = not (heads == 1 and dim_head == channels)
        self.to_out = nn.Linear(inner, channels) if project_out else nn.Identity()
        self.out_drop = nn.Dropout(dropout)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        # LayerNorm acts per token, so normalising the whole map before partitioning equals normalising each
        # window (and does not repeat the work for overlapping windows).
        return self.attn_norm(self.norm(x))

    def attend(self, box: list[torch.Tensor], valid: torch.Tensor | None, owner: nn.Module | None, key: str) -> torch.Tensor:
        """Window tokens n×L×C (normalised; passed in a one-element list that is emptied, so that the caller
        holds no reference and inference frees them as soon as q, k, v exist) → n×L×C.  ``valid``: n×1×1×L
        bool (False = padding) or None."""
        win = box.pop()
        n, length, _ = win.shape
        # unbind on the qkv dim of n×L×3×heads×d: its backward stacks the gradients straight into that layout
        q, k, v = (t.transpose(1, 2) for t in self.to_qkv(win).view(n, length, 3, self.heads, self.dim_head).unbind(2))
        del win
        mask = None
        if valid is not None:  # additive mask, the dtype's most negative finite value (never -inf, never NaN)
            mask = torch.zeros(valid.shape, dtype=q.dtype, device=q.device).masked_fill(~valid, torch.finfo(q.dtype).min)
        p = self.dropout if self.training else 0.0
        out = layers.attention(q, k, v, mask=mask, scale=self.dim_head**-0.5, dropout_p=p, module=owner, key=key)
        del q, k, v
        out = out.transpose(1, 2).reshape(n, length, self.heads * self.dim_head)
        return self.out_drop(self.to_out(out))


def _window_attention(
    x: torch.Tensor,
    body: _WindowSelfAttention,
    kernel: int,
    stride: int,
    owner: nn.Module | None,
    key: str,
) -> torch.Tensor:
    """Window attention on x: B×C×H×W (any memory format) → B×C×H×W.

    Non-overlapping windows: one copy from the map into window-major tokens (n×k²×C) and one copy back,
    straight from / to B×C×H×W.  Overlapping windows: LayerNorm on the map, a strided view, one copy, and the
    outputs are summed back with 2k shifted adds and divided by the cover count.
    """
    b, c, h, w = x.shape
    nh, hp = window_grid(h, kernel, stride)
    nw, wp = window_grid(w, kernel, stride)
    padded = hp != h or wp != w
    k2 = kernel * kernel
    n = b * nh * nw
    if stride == kernel:  # a reshape partition; LayerNorm per token on the windows
        y = F.pad(x, (0, wp - w, 0, hp - h)) if padded else x
        box = [body.normalise(y.reshape(b, c, nh, kernel, nw, kernel).permute(0, 2, 4, 3, 5, 1).reshape(n, k2, c))]
    else:  # LayerNorm once per pixel, then gather the overlapping windows (shifted strided views, one stack)
        y = body.normalise(x.permute(0, 2, 3, 1))
        if padded:
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        box = [gather_shifts(y, kernel, stride, nh, nw).reshape(n, k2, c)]
    del y
    valid = None
    if padded:  # padding never takes part as a key (masked in attend)
        valid = _axis_valid(nh, kernel, stride, h, x.device)[:, None, :, None] & _axis_valid(nw, kernel, stride, w, x.device)[None, :, None, :]
        valid = valid.reshape(1, nh * nw, 1, 1, k2).expand(b, -1, -1, -1, -1).reshape(n, 1, 1, k2)
    out = body.attend(box, valid, owner, key)
    if stride == kernel:
        out = out.view(b, nh, nw, kernel, kernel, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, hp, wp)
        return out[:, :, :h, :w] if padded else out
    # overlapping: sum the windows back (shifted adds), divide by the number of windows covering each pixel
    full = fold_shifts(out.view(b, nh, nw, k2, c), kernel, stride, hp, wp)
    cover = _axis_cover(nh, kernel, stride, h, x.device)[:, None] * _axis_cover(nw, kernel, stride, w, x.device)[None, :]
    return (full[:, :h, :w] / cover[:, :, None].to(full.dtype)).permute(0, 3, 1, 2)


def _owner(module: nn.Module) -> nn.Module | None:
    return module if is_capturing(module) else None


# ----------------------------------------------------------------------------------------------------------------
# local_window
# ----------------------------------------------------------------------------------------------------------------


@torch.fx.wrap
def _local_window(x: torch.Tensor, body: _WindowSelfAttention, kernel: int, stride: int, owner: nn.Module | None) -> torch.Tensor:
    return _window_attention(x, body, kernel, stride, owner, "attn")


def _check_window_args(owner: str, channels: int, kernel_size: int, stride: int | None, heads: int,
                       dim_head: int | None, dropout: float) -> tuple[int, int, int]:
    layers.positive_int(channels, owner, "channels")
    layers.positive_int(kernel_size, owner, "kernel_size")
    stride = kernel_size if stride is None else stride
    layers.check_arg(isinstance(stride, int) and not isinstance(stride, bool) and 1 <= stride <= kernel_size, owner,
                     "stride", f"an integer in [1, kernel_size={kernel_size}] (larger strides leave pixels uncovered)", stride)
    layers.positive_int(heads, owner, "heads")
    if dim_head is None:
        layers.check_arg(channels % heads == 0, owner, "heads", f"a divisor of channels={channels} when dim_head is None", heads)
        dim_head = channels // heads
    layers.positive_int(dim_head, owner, "dim_head")
    layers.check_arg(isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0, owner, "dropout", "a float in [0, 1)", dropout)
    return stride, heads, dim_head


@register(
    "local_window",
    family="local",
    paper=_MANO_PAPER + " — LocalAttention2D (seed 000)",
    url=_MANO_URL,
    complexity="O(N·k²)",
    summary="Multi-head self-attention inside k×k windows (non-overlapping or overlapping-and-averaged); padded keys masked.",
    test_kwargs={"heads": 2, "dim_head": 8},
)
class LocalWindowAttention(nn.Module):
    """Local window multi-head self-attention (MANO's ``LocalAttention2D``, seed 000); B×C×H×W → B×C×H×W.

    The map is cut into ``kernel_size``×``kernel_size`` windows with ``stride`` (default = kernel:
    non-overlapping); each window's tokens go through ``LayerNorm`` → ``LayerNorm`` → multi-head self-attention
    (qkv without bias, scale dim_head^-0.5, output projection) as the reference; overlapping windows
    (stride < kernel) are summed back and divided by the number of windows covering each pixel (averaged).
    No positional bias (as the reference).  No residual inside.

    Sizes that do not divide, or are smaller than the window, are zero-padded on the bottom/right so that every
    pixel is covered, and padded positions are masked out as keys (an additive mask with the dtype's most
    negative finite value, so a window never attends to padding and nothing turns into NaN).  Padding only
    adds windows at the border: at sizes that tile exactly the result equals the reference.

    Differences from the community code (seed 000 ``LocalAttention2D``): it returns the input unchanged when the
    map is smaller than the window (here: one padded window), leaves the last rows/columns out when the size
    does not tile (0/0 = NaN after the overlap division; here: an extra padded, masked window), takes
    B×H×W×C (here B×C×H×W), and uses ``nn.Unfold``/``nn.Fold`` (here a reshape partition, or shifted strided
    views and shifted adds when windows overlap).  As the reference it normalises twice (LocalAttention2D's
    ``LayerNorm`` and AttentionBlock's own), kept for weight compatibility; dropout defaults to 0.

    Args:
        channels: input channels C.
        kernel_size: window size k (any positive integer; 7 by default).
        stride: window stride in [1, k]; ``None`` = k (non-overlapping).
        heads: attention heads (reference default 8).
        dim_head: width per head (reference default 64); ``None`` = C // heads.
        dropout: dropout on the attention probabilities and after the output projection (train mode only).

    Attention maps (``attnzoo.capture_attention``): ``"attn"``, (B·windows)×heads×k²×k².
    """

    def __init__(self, channels: int, kernel_size: int = 7, stride: int | None = None, heads: int = 8,
                 dim_head: int | None = 64, dropout: float = 0.0) -> None:
        super().__init__()
        stride, heads, dim_head = _check_window_args("LocalWindowAttention", channels, kernel_size, stride, heads, dim_head, dropout)
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        self.heads, self.dim_head = heads, dim_head
        self.attention = _WindowSelfAttention(channels, heads, dim_head, float(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "LocalWindowAttention")
        return _local_window(x, self.attention, self.kernel_size, self.stride, _owner(self))

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, heads={self.heads}, dim_head={self.dim_head}"


# ----------------------------------------------------------------------------------------------------------------
# outlook
# ----------------------------------------------------------------------------------------------------------------


@torch.fx.wrap
def _outlook(
    x: torch.Tensor,
    v_proj: nn.Linear,
    attn_proj: nn.Linear,
    out_proj: nn.Linear,
    attn_drop: nn.Dropout,
    kernel: int,
    padding: int,
    stride: int,
    heads: int,
    scale: float,
    owner: nn.Module | None,
) -> torch.Tensor:
    b, c, h, w = x.shape
    d = c // heads
    k2 = kernel * kernel
    gh, gw = -(-h // stride), -(-w // stride)  # window grid ⌈H/s⌉×⌈W/s⌉, as the official unfold and ceil-mode pool
    xl = x.permute(0, 2, 3, 1)
    centre = xl if stride == 1 else F.avg_pool2d(x, stride, stride, ceil_mode=True).permute(0, 2, 3, 1)
    a = attn_proj(centre).reshape(b, gh * gw, heads, k2, k2)
    a = attn_drop((a * scale).softmax(dim=-1))  # B×N'×heads×k²(out)×k²(source)
    if owner is not None:
        record(owner, "attn", a.permute(0, 2, 1, 3, 4))  # official layout B×heads×N'×k²×k²
    # zero-pad v as the official unfold does (p on top/left; bottom/right so that the last window fits and the
    # buffer also holds the p + H rows the fold crops from); intermediates are dropped as soon as they are used,
    # so that inference keeps at most the gathered v and the product alive
    hb, wb = max(stride * (gh - 1) + kernel, padding + h), max(stride * (gw - 1) + kernel, padding + w)
    vp = F.pad(v_proj(xl), (0, 0, padding, wb - padding - w, padding, hb - padding - h)).unflatten(-1, (heads, d))
    vu = gather_shifts(vp, kernel, stride, gh, gw)  # B×gh×gw×heads×k²×d (the official unfold)
    del vp
    y = a @ vu.view(b, gh * gw, heads, k2, d)  # B×N'×heads×k²(out)×d
    del a, vu
    out = fold_shifts(y.view(b, gh, gw, heads, k2, d), kernel, stride, hb, wb)  # the official F.fold
    del y
    out = out[:, padding : padding + h, padding : padding + w].reshape(b, h, w, c)
    return out_proj(out).permute(0, 3, 1, 2)


@register(
    "outlook",
    family="local",
    paper="VOLO: Vision Outlooker for Visual Recognition (Yuan, Hou, Jiang, Feng, Yan; TPAMI 2022)",
    url="https://arxiv.org/abs/2106.13112",
    complexity="O(N·k⁴)",
    summary="VOLO outlook attention: k²×k² weights generated from each centre token, aggregate and sum overlapping windows.",
    test_kwargs={"heads": 2},
)
class OutlookAttention(nn.Module):
    """Outlook attention (VOLO, Yuan et al., TPAMI 2022); B×C×H×W → B×C×H×W.

    The official ``OutlookAttention`` (sail-sg/volo ``models/volo.py``; also ``timm.models.volo``):
    ``v = Linear(C→C)(x)``; for each window centre on the ⌈H/s⌉×⌈W/s⌉ grid, weights ``a = softmax(Linear(C →
    k⁴·heads)(AvgPool_s(x)) · d^-0.5)`` (k²×k² per head, generated from the pooled centre token, no q·k
    product); the window's k² outputs ``a @ v_window`` are placed back and **summed** where windows overlap
    (the official ``F.fold``), then ``Linear(C→C)``.  The output is H×W for every stride: with stride 2
    (VOLO's Outlooker setting) the attention runs on the ⌈H/2⌉×⌈W/2⌉ grid (ceil-mode pooling) and the fold
    scatters each window back at stride 2 to full resolution, exactly as the official code.  Odd sizes work as
    the official (zero padding of v takes part as zero values, as in the official unfold).

    Parameters are named as the official / timm module (``v``, ``attn``, ``proj``), so their state dicts
    load directly.  Internally channels-last; ``F.fold`` is replaced by k² shifted adds (same sum).

    Differences from the community code (External-Attention ``OutlookAttention``): that one passes padding and
    stride positionally to ``nn.Unfold`` (they land on dilation and padding), so stride 2 crashes for every
    shape; it reuses ``attn_drop`` (default 0.1) as projection dropout; it takes B×H×W×C.

    Args:
        channels: input channels C.
        kernel_size: window k (odd).
        padding: must be (k - 1) / 2 (default): the official code only works when the unfold grid equals the
            ⌈H/s⌉×⌈W/s⌉ pooled grid, which is the case exactly for this padding.
        stride: window stride s (1, or 2 as in VOLO).
        heads: heads (must divide C).
        qkv_bias: bias of the v projection.
        qk_scale: attention scale (default head_dim^-0.5).
        attn_drop, proj_drop: dropout rates (0 by default, as the official).

    Attention maps: ``"attn"``, B×heads×N'×k²×k² (N' = ⌈H/s⌉·⌈W/s⌉).
    """

    def __init__(self, channels: int, kernel_size: int = 3, padding: int | None = None, stride: int = 1,
                 heads: int = 1, qkv_bias: bool = False, qk_scale: float | None = None, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        name = "OutlookAttention"
        layers.positive_int(channels, name, "channels")
        layers.odd_kernel(kernel_size, name)
        padding = kernel_size // 2 if padding is None else padding
        layers.check_arg(padding == kernel_size // 2, name, "padding",
                         f"(kernel_size - 1) / 2 = {kernel_size // 2} (the only padding for which the official unfold "
                         f"grid matches the ⌈H/stride⌉ attention grid)", padding)
        layers.positive_int(stride, name, "stride")
        layers.positive_int(heads, name, "heads")
        layers.check_arg(channels % heads == 0, name, "heads", f"a divisor of channels={channels}", heads)
        layers.check_arg(qk_scale is None or qk_scale > 0, name, "qk_scale", "None or a positive float", qk_scale)
        for what, p in (("attn_drop", attn_drop), ("proj_drop", proj_drop)):
            layers.check_arg(isinstance(p, (int, float)) and 0.0 <= p < 1.0, name, what, "a float in [0, 1)", p)
        self.channels, self.kernel_size, self.padding, self.stride, self.heads = channels, kernel_size, padding, stride, heads
        self.scale = float(qk_scale) if qk_scale is not None else (channels // heads) ** -0.5
        self.v = nn.Linear(channels, channels, bias=qkv_bias)
        self.attn = nn.Linear(channels, kernel_size**4 * heads)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "OutlookAttention")
        out = _outlook(x, self.v, self.attn, self.proj, self.attn_drop, self.kernel_size, self.padding, self.stride,
                       self.heads, self.scale, _owner(self))
        return self.proj_drop(out)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, padding={self.padding}, stride={self.stride}, heads={self.heads}"


# ----------------------------------------------------------------------------------------------------------------
# multipole
# ----------------------------------------------------------------------------------------------------------------


def multipole_level_sizes(h: int, w: int, kernel_size: int, sampling_rate: int, max_levels: int | None = None) -> list[tuple[int, int]]:
    """Grid sizes of the multipole hierarchy for an H×W input, finest first.

    Level 0 is the input; while the current map is at least the window (max(h, w) ≥ k, and larger than 1×1)
    another level ⌈h/r⌉×⌈w/r⌉ is added, so the coarsest map fits in one window (global receptive field).
    ``max_levels`` caps the count.
    """
    sizes = [(h, w)]
    while max(h, w) >= kernel_size and max(h, w) > 1 and (max_levels is None or len(sizes) < max_levels):
        h, w = -(-h // sampling_rate), -(-w // sampling_rate)
        sizes.append((h, w))
    return sizes


def _downsample(x: torch.Tensor, conv: nn.Conv2d | None, rate: int) -> torch.Tensor:
    """B×C×h×w → B×C×⌈h/r⌉×⌈w/r⌉: average over the real pixels of each r×r cell, or a stride-r conv on the zero-padded map."""
    if conv is None:
        return F.avg_pool2d(x, rate, rate, ceil_mode=True)
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % rate, (-w) % rate
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return conv(x)


def _upsample(x: torch.Tensor, deconv: nn.ConvTranspose2d | None, rate: int, h: int, w: int) -> torch.Tensor:
    """B×C×h'×w' → B×C×h×w: nearest (r× repeat) or a stride-r transposed conv, cropped to the finer level's size."""
    b, c, hc, wc = x.shape
    if deconv is None:
        y = x[:, :, :, None, :, None].expand(b, c, hc, rate, wc, rate).reshape(b, c, hc * rate, wc * rate)
    else:
        y = deconv(x)
    return y[:, :, :h, :w]


def _merge(o: torch.Tensor, res: torch.Tensor, up: nn.ConvTranspose2d | None, rate: int, weight: float) -> torch.Tensor:
    """V-cycle step ``o + weight · up(res)``; nearest up-sampling by broadcasting when the sizes divide."""
    b, c, h, w = o.shape
    hc, wc = res.shape[-2:]
    if up is None and hc * rate == h and wc * rate == w and o.is_contiguous():
        merged = torch.add(o.view(b, c, hc, rate, wc, rate), res[:, :, :, None, :, None], alpha=weight)
        return merged.view(b, c, h, w)
    return torch.add(o, _upsample(res, up, rate, h, w), alpha=weight)


@torch.fx.wrap
def _multipole(
    x: torch.Tensor,
    bodies: nn.ModuleList,
    down: nn.Conv2d | None,
    up: nn.ConvTranspose2d | None,
    kernel: int,
    stride: int,
    rate: int,
    max_levels: int | None,
    owner: nn.Module | None,
) -> torch.Tensor:
    b, c, h, w = x.shape
    sizes = multipole_level_sizes(h, w, kernel, rate, max_levels)
    cur = x
    outs = []
    for level in range(len(sizes)):
        if level > 0:
            cur = _downsample(cur, down, rate)
        body = bodies[min(level, len(bodies) - 1)]
        outs.append(_window_attention(cur, body, kernel, stride, owner, f"attn_level{level}"))
    # V-cycle: res = o_l + up(res) / (i + 1), i counted from the coarse end (first merge weight 1)
    res = outs.pop()
    for i in range(len(outs)):
        o = outs.pop()  # finer level; dropping the list's reference lets inference free it after the merge
        res = _merge(o, res, up, rate, 1.0 / (i + 1))
        del o
    return res


@register(
    "multipole",
    family="local",
    paper=_MANO_PAPER,
    url=_MANO_URL,
    complexity="O(N)",
    summary="MANO multipole attention: shared window attention on a down-sampled hierarchy merged by a V-cycle (global, linear).",
    test_kwargs={"heads": 2, "dim_head": 8, "kernel_size": 3, "downsampling": "conv", "upsampling": "conv_transpose"},
)
class MultipoleAttention(nn.Module):
    """Multipole attention (MANO, Colagrande et al., 2025); B×C×H×W → B×C×H×W.

    Fast-multipole-style hierarchy: level 0 is the input, level l+1 = down(level l) with rate r; the *same*
    local window attention (:class:`LocalWindowAttention`'s computation) runs on every level, and the outputs
    are merged coarse to fine by the reference V-cycle ``res = o_l + up(res) / (i + 1)`` (i counted from the
    coarse end: weight 1 for the first merge, 1/(L-1) for the finest).  The number of levels is computed from
    the actual input at forward time: keep down-sampling while the map is at least the window, so the
    coarsest map fits in one window and every output depends on every input pixel (global receptive field) at
    a cost linear in H·W (N·(1 + 1/r² + 1/r⁴ + …)·k²).  No residual inside (as the reference).

    Any H×W: down-sampling handles sizes that do not divide by r (``avg_pool``: ceil mode, average over the
    valid pixels of each cell; ``conv``: zero-pad to a multiple of r), up-sampling is cropped back to the finer
    level's size, and each level's windows pad and mask as :class:`LocalWindowAttention`.

    Differences from the reference / community code (seed 000 ``Multipole_Attention2D``): the number of levels
    is fixed at construction from ``image_size`` (reference: ``int(log_r(image_size))``, which can build levels
    smaller than the window and has float-log off-by-ones; seed: one level fewer than it can, often losing the
    global field) — here it follows the input; ``channel_scale`` (accepted but unused there) is dropped; the
    up-sampling options are named ``"nearest"``/``"conv_transpose"`` (the seed's ``"avg_pool"``/``"conv"``
    spellings are accepted); sizes need not divide; B×C×H×W instead of B×H×W×C.

    Args:
        channels: input channels C.
        kernel_size: window k of the local attention (default 7).
        stride: window stride (default k: non-overlapping).
        sampling_rate: down/up-sampling factor r ≥ 2 (default 2).
        heads, dim_head: attention heads and width per head (reference defaults 8 and 64; ``dim_head=None`` =
            C // heads).
        downsampling: ``"avg_pool"`` (default) or ``"conv"`` (r×r stride-r conv without bias, shared by levels).
        upsampling: ``"nearest"`` (default) or ``"conv_transpose"`` (r×r stride-r, no bias, shared).
        dropout: attention / projection dropout (train mode only).
        shared: one local attention for all levels (the reference); ``False`` gives each level its own.
        max_levels: cap on the number of levels (``None`` = as many as the input needs).  With
            ``shared=False`` it is required: it is the number of attention modules built; the hierarchy then
            stops at that depth (the receptive field is global only while the input needs no more levels).

    Attention maps: ``"attn_level{l}"`` per level, (B·windows)×heads×k²×k².
    """

    def __init__(self, channels: int, kernel_size: int = 7, stride: int | None = None, sampling_rate: int = 2,
                 heads: int = 8, dim_head: int | None = 64, downsampling: str = "avg_pool", upsampling: str = "nearest",
                 dropout: float = 0.0, shared: bool = True, max_levels: int | None = None) -> None:
        super().__init__()
        name = "MultipoleAttention"
        stride, heads, dim_head = _check_window_args(name, channels, kernel_size, stride, heads, dim_head, dropout)
        layers.check_arg(isinstance(sampling_rate, int) and not isinstance(sampling_rate, bool) and sampling_rate >= 2,
                         name, "sampling_rate", "an integer ≥ 2", sampling_rate)
        layers.check_arg(downsampling in ("avg_pool", "conv"), name, "downsampling", "'avg_pool' or 'conv'", downsampling)
        up_kind = {"nearest": "nearest", "conv_transpose": "conv_transpose", "avg_pool": "nearest", "conv": "conv_transpose"}
        layers.check_arg(upsampling in up_kind, name, "upsampling",
                         "'nearest' or 'conv_transpose' (or the seed's 'avg_pool' / 'conv' spellings)", upsampling)
        layers.check_arg(isinstance(shared, bool), name, "shared", "a bool", shared)
        if max_levels is not None:
            layers.positive_int(max_levels, name, "max_levels")
        layers.check_arg(shared or max_levels is not None, name, "max_levels",
                         "an integer (the number of per-level attention modules) when shared=False", max_levels)
        self.channels, self.kernel_size, self.stride, self.sampling_rate = channels, kernel_size, stride, sampling_rate
        self.heads, self.dim_head, self.shared, self.max_levels = heads, dim_head, shared, max_levels
        self.downsampling, self.upsampling = downsampling, up_kind[upsampling]
        n_bodies = 1 if shared else max_levels
        self.attention = nn.ModuleList(_WindowSelfAttention(channels, heads, dim_head, float(dropout)) for _ in range(n_bodies))
        self.down = nn.Conv2d(channels, channels, sampling_rate, sampling_rate, bias=False) if downsampling == "conv" else None
        self.up = (nn.ConvTranspose2d(channels, channels, sampling_rate, sampling_rate, bias=False)
                   if self.upsampling == "conv_transpose" else None)

    def level_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        """The grid sizes this module uses for an H×W input, finest first."""
        return multipole_level_sizes(h, w, self.kernel_size, self.sampling_rate, self.max_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "MultipoleAttention")
        return _multipole(x, self.attention, self.down, self.up, self.kernel_size, self.stride, self.sampling_rate,
                          self.max_levels, _owner(self))

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, sampling_rate={self.sampling_rate}, "
                f"heads={self.heads}, dim_head={self.dim_head}, downsampling={self.downsampling!r}, "
                f"upsampling={self.upsampling!r}, shared={self.shared}, max_levels={self.max_levels}")
