"""Local window attention: multi-head self-attention inside k×k windows (MANO's LocalAttention2D).

Paper: https://arxiv.org/abs/2507.02748 (Colagrande et al., 2025).  Non-overlapping windows are a reshape partition,
overlapping ones k² shifted strided views stacked once (and summed back by shifted adds); sizes that do not
divide are zero-padded and the padded positions are masked out as keys.
"""

from __future__ import annotations

import functools
from typing import ClassVar, NamedTuple

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..capture import capture_target
from ..functional import (
    axis_cover,
    axis_valid,
    fold_shifts,
    gather_shifts,
    window_grid,
)
from ..functional.windows import grouped_self_attention, merge_windows, partition_windows
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    attention,
    check_nchw,
    fx_leaf,
)
from ..layers import check_window_args as _check_window_args
from ..registry import register
from ..tracing import PortableForm, portable

__all__ = ["LocalWindowAttention", "WindowSelfAttention", "window_attention"]


_MANO_PAPER = "Linear Attention with Global Context: A Multipole Attention Mechanism for Vision and Physics (Colagrande, Caillon, Feillet, Allauzen; arXiv 2025)"
_MANO_URL = "https://arxiv.org/abs/2507.02748"


class WindowSelfAttention(nn.Module):
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

    def attend(
        self, box: list[torch.Tensor], valid: torch.Tensor | None, owner: nn.Module | None, key: str
    ) -> torch.Tensor:
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
            mask = torch.zeros(valid.shape, dtype=q.dtype, device=q.device).masked_fill(
                ~valid, torch.finfo(q.dtype).min
            )
        p = self.dropout if self.training else 0.0
        out = attention(q, k, v, mask=mask, scale=self.dim_head**-0.5, dropout_p=p, module=owner, key=key)
        del q, k, v
        out = out.transpose(1, 2).reshape(n, length, self.heads * self.dim_head)
        return self.out_drop(self.to_out(out))

    def attend_grouped(
        self, win: torch.Tensor, valid: torch.Tensor | None, owner: nn.Module | None, key: str
    ) -> torch.Tensor:
        """:meth:`attend` in the portable form (:func:`~attnzoo.functional.windows.grouped_self_attention`: the
        windows on their own axis, at most 5 axes): win B×G×L×C (normalised) → B×G×L×C; ``valid``: G×L bool or
        None."""
        p = self.dropout if self.training else 0.0
        return grouped_self_attention(
            win,
            self.to_qkv,
            lambda o: self.out_drop(self.to_out(o)),
            self.heads,
            self.dim_head**-0.5,
            valid,
            p,
            functools.partial(attention, module=owner, key=key),
        )


#: The export targets that take the windows' portable form (local_window and multipole): ncnn has no batch axis
#: to fold the windows into, at most 5 axes and no step slices.
WINDOW_TARGETS: tuple[str, ...] = ("ncnn",)


def _valid_tokens(nh: int, nw: int, kernel: int, stride: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """(nh·nw)×k² bool: which window tokens lie inside the unpadded H×W map (export forms)."""
    rows = axis_valid(nh, kernel, stride, h, device)[:, None, :, None]
    cols = axis_valid(nw, kernel, stride, w, device)[None, :, None, :]
    return (rows & cols).reshape(nh * nw, kernel * kernel)


class _Grid(NamedTuple):
    """k×k windows at stride s over an H×W map: an nh×nw grid covering the padded hp×wp map."""

    kernel: int
    stride: int
    h: int
    w: int
    nh: int
    nw: int
    hp: int
    wp: int


def _grid(h: int, w: int, kernel: int, stride: int) -> _Grid:
    (nh, hp), (nw, wp) = window_grid(h, kernel, stride), window_grid(w, kernel, stride)
    return _Grid(kernel, stride, h, w, nh, nw, hp, wp)


def window_attention_portable(
    x: torch.Tensor, body: WindowSelfAttention, grid: _Grid, owner: nn.Module | None, key: str
) -> torch.Tensor:
    """The ncnn portable form of :func:`window_attention` on the window ``grid`` of ``x``: the windows on their
    own axis (at most 5 axes), and overlapping windows by ``F.unfold`` / ``F.fold`` (ncnn has no step slices);
    the same values."""
    b, c = x.shape[0], x.shape[1]
    kernel, stride, h, w, nh, nw, hp, wp = grid
    padded = hp != h or wp != w
    k2 = kernel * kernel
    if stride == kernel:  # windows on their own axis, at most 5 axes
        y = F.pad(x, (0, wp - w, 0, hp - h)) if padded else x
        win = body.normalise(partition_windows(y, kernel))
        valid = _valid_tokens(nh, nw, kernel, stride, h, w, x.device) if padded else None
        out = merge_windows(body.attend_grouped(win, valid, owner, key), kernel, nh, nw)
        return out[:, :, :h, :w] if padded else out
    # overlapping windows by F.unfold / F.fold (no step slices), ≤5 axes
    y = body.normalise(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    if padded:
        y = F.pad(y, (0, wp - w, 0, hp - h))
    win = F.unfold(y, kernel, stride=stride).reshape(b, c, k2, nh * nw).permute(0, 3, 2, 1)  # B×G×k²×C
    valid = _valid_tokens(nh, nw, kernel, stride, h, w, x.device) if padded else None
    out = body.attend_grouped(win, valid, owner, key).permute(0, 3, 2, 1).reshape(b, c * k2, nh * nw)
    full = F.fold(out, (hp, wp), kernel, stride=stride)[:, :, :h, :w]
    cover = axis_cover(nh, kernel, stride, h, x.device)[:, None] * axis_cover(nw, kernel, stride, w, x.device)
    return full * (1.0 / cover.to(full.dtype)).reshape(1, 1, h, w)


def window_attention(
    x: torch.Tensor,
    body: WindowSelfAttention,
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
    grid = _grid(h, w, kernel, stride)
    if portable(*WINDOW_TARGETS):  # windows on their own axis, at most 5 axes, no step slices; same result
        return window_attention_portable(x, body, grid, owner, key)
    nh, nw, hp, wp = grid.nh, grid.nw, grid.hp, grid.wp
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
        valid = (
            axis_valid(nh, kernel, stride, h, x.device)[:, None, :, None]
            & axis_valid(nw, kernel, stride, w, x.device)[None, :, None, :]
        )
        valid = valid.reshape(1, nh * nw, 1, 1, k2).expand(b, -1, -1, -1, -1).reshape(n, 1, 1, k2)
    out = body.attend(box, valid, owner, key)
    if stride == kernel:
        out = out.view(b, nh, nw, kernel, kernel, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, hp, wp)
        return out[:, :, :h, :w] if padded else out
    # overlapping: sum the windows back (shifted adds), divide by the number of windows covering each pixel
    full = fold_shifts(out.view(b, nh, nw, k2, c), kernel, stride, hp, wp)
    cover = axis_cover(nh, kernel, stride, h, x.device)[:, None] * axis_cover(nw, kernel, stride, w, x.device)[None, :]
    return (full[:, :h, :w] / cover[:, :, None].to(full.dtype)).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------------------------------------------
# local_window
# ----------------------------------------------------------------------------------------------------------------


@fx_leaf
def _local_window(
    x: torch.Tensor, body: WindowSelfAttention, kernel: int, stride: int, owner: nn.Module | None
) -> torch.Tensor:
    return window_attention(x, body, kernel, stride, owner, "attn")


@register(
    "local_window",
    family="local",
    paper=_MANO_PAPER + " — LocalAttention2D",
    url=_MANO_URL,
    complexity="O(N·k²)",
    summary="Multi-head self-attention inside k×k windows (non-overlapping or overlapping-and-averaged); padded keys masked.",
    test_kwargs={"heads": 2, "dim_head": 8},
    maps=("attn",),
    forms=(
        PortableForm(
            targets=WINDOW_TARGETS,
            marker="aten::chunk",
            reason="the eager form folds the windows into the batch through 6-axis views and gathers overlapping "
            "windows by step slices; ncnn has no batch axis, at most 5 axes and no step slices",
            cases=({}, {"kernel_size": 4}, {"kernel_size": 5, "stride": 3}, {"kernel_size": 3, "stride": 1}),
        ),
    ),
)
class LocalWindowAttention(AttnModule):
    """Local window multi-head self-attention (MANO's ``LocalAttention2D``); B×C×H×W → B×C×H×W.

    The map is cut into ``kernel_size``×``kernel_size`` windows with ``stride`` (default = kernel:
    non-overlapping); each window's tokens go through ``LayerNorm`` → ``LayerNorm`` → multi-head self-attention
    (qkv without bias, scale dim_head^-0.5, output projection) as the reference; overlapping windows
    (stride < kernel) are summed back and divided by the number of windows covering each pixel (averaged).
    No positional bias (as the reference).  No residual inside.

    Sizes that do not divide, or are smaller than the window, are zero-padded on the bottom/right so that every
    pixel is covered, and padded positions are masked out as keys (an additive mask with the dtype's most
    negative finite value, so a window never attends to padding and nothing turns into NaN).  Padding only
    adds windows at the border: at sizes that tile exactly the result equals the reference.

    Differences from the community code (``LocalAttention2D``): it returns the input unchanged when the
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

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "window side"),
    }

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        stride: int | None = None,
        heads: int = 8,
        dim_head: int | None = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        stride, heads, dim_head = _check_window_args(
            self.owner, channels, kernel_size, stride, heads, dim_head, dropout
        )
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        self.heads, self.dim_head = heads, dim_head
        self.attention = WindowSelfAttention(channels, heads, dim_head, float(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        return _local_window(x, self.attention, self.kernel_size, self.stride, capture_target(self))

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, heads={self.heads}, dim_head={self.dim_head}"
