"""Factorised 2-D relative position logits of BoTNet and attention-augmented convolution (shared kernel).

For a query at (y, x) and a key at (y', x') of an h×w map, the position logit is ``q · (R_h[y' − y] + R_w[x' − x])``
(key minus query), with two learned tables ``R_h``: (2H − 1)×d and ``R_w``: (2W − 1)×d built for a maximum size
``max_size = (H, W)``; row ``Δ + H − 1`` holds offset Δ.  A smaller map uses the centre rows of each table (the
offsets it can have); a larger one raises ``ValueError`` naming the limit.

The logits are computed by gathering the h×h×d and w×w×d offset tables and two broadcast matmuls (at most 5
axes, no ``rel_to_abs`` pad-and-reshape trick), then added to the content logits as an additive float mask of
``F.scaled_dot_product_attention`` (exact: SDPA adds the mask to the scaled content logits before its softmax).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..tracing import fx_leaf, is_tracing

__all__ = [
    "factorised_logits",
    "factorised_mask",
    "relative_offset_tables",
    "relative_logits_2d",
    "relative_logit_mask",
    "check_relative_size",
    "check_relative_input",
]


def check_relative_size(h: int, w: int, max_size: tuple[int, int], owner: str) -> None:
    """``ValueError`` naming ``owner`` and the limit when an h×w map exceeds the tables' ``max_size``."""
    if h > max_size[0] or w > max_size[1]:
        raise ValueError(
            f"{owner}: the relative position tables cover maps up to max_size={tuple(max_size)} (H, W), got an "
            f"input of {h}×{w}; build the module with max_size ≥ ({h}, {w})"
        )


@fx_leaf
def check_relative_input(x: torch.Tensor, max_size: tuple[int, int], owner: str) -> torch.Tensor:
    """:func:`check_relative_size` on the last two axes of ``x`` (an FX leaf, skipped while tracing: the shapes
    are baked into a trace and the check ran when it was recorded); returns ``x``."""
    if not is_tracing():
        check_relative_size(x.shape[-2], x.shape[-1], max_size, owner)
    return x


def relative_offset_tables(
    height_rel: torch.Tensor, width_rel: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T_h, T_w)``: h×h×d and w×w×d with ``T_h[i, j] = R_h[j − i + H − 1]`` (key j, query i), the centre slice
    of the (2H − 1)-row table for a map of h ≤ H rows (and the same for the width)."""
    big_h, big_w = (height_rel.shape[0] + 1) // 2, (width_rel.shape[0] + 1) // 2
    ih = torch.arange(h, device=height_rel.device)
    iw = torch.arange(w, device=width_rel.device)
    return (
        height_rel[ih[None, :] - ih[:, None] + (big_h - 1)],
        width_rel[iw[None, :] - iw[:, None] + (big_w - 1)],
    )


def factorised_logits(
    q: torch.Tensor, t_h: torch.Tensor, t_w: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column logit factors of queries ``q``: B×heads×(h·w)×d (row-major positions) against per-pair
    tables ``t_h``: …×h×h'×d (query row, key row) and ``t_w``: …×w×w'×d (query column, key column), the leading
    axes broadcasting with ``heads`` (none, or ``heads``).

    Returns ``a_h``: B×heads×h×w×h' (``q[y, x] · t_h[y, y']``) and ``a_w``: B×heads×h×w×w'
    (``q[y, x] · t_w[x, x']``), by two broadcast matmuls (≤ 5 axes): the logit of key (y', x') is
    ``a_h[…, y'] + a_w[…, x']``.
    """
    b, heads, _, d = q.shape
    q5 = q.reshape(b, heads, h, w, d)
    a_h = q5 @ t_h.transpose(-1, -2)  # per query row y: (w×d) @ (d×h')
    a_w = (q5.transpose(2, 3) @ t_w.transpose(-1, -2)).transpose(2, 3)  # per query column x: (h×d) @ (d×w')
    return a_h, a_w


def factorised_mask(a_h: torch.Tensor, a_w: torch.Tensor) -> torch.Tensor:
    """``a_h[…, y'] + a_w[…, x']`` as a B×heads×N×N' additive mask (keys row-major), through 5-axis views."""
    b, heads, h, w, hk = a_h.shape
    wk = a_w.shape[-1]
    mask = a_h.reshape(b, heads, h * w, hk, 1) + a_w.reshape(b, heads, h * w, 1, wk)
    return mask.reshape(b, heads, h * w, hk * wk)


def relative_logits_2d(
    q: torch.Tensor, height_rel: torch.Tensor, width_rel: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the relative logits for queries ``q``: B×heads×(h·w)×d (row-major positions).

    Returns ``a_h``: B×heads×h×w×h (``q[y, x] · R_h[y' − y]`` for key row y') and ``a_w``: B×heads×h×w×w
    (``q[y, x] · R_w[x' − x]`` for key column x'); the logit of key (y', x') is ``a_h[…, y'] + a_w[…, x']``.
    """
    t_h, t_w = relative_offset_tables(height_rel, width_rel, h, w)
    return factorised_logits(q, t_h, t_w, h, w)


@fx_leaf
def relative_logit_mask(
    q: torch.Tensor, height_rel: torch.Tensor, width_rel: torch.Tensor, h: int, w: int, scale: float = 1.0
) -> torch.Tensor:
    """The B×heads×N×N additive mask ``scale · (a_h[…, y'] + a_w[…, x'])`` of :func:`relative_logits_2d` (N = h·w,
    keys row-major); computed in float32 when q is bfloat16 / float16 (autocast), else in q's dtype."""
    work = q.float() if q.dtype in (torch.float16, torch.bfloat16) else q
    if scale != 1.0:  # on the N×d queries, not on the N×N mask
        work = work * scale
    a_h, a_w = relative_logits_2d(work, height_rel.to(work.dtype), width_rel.to(work.dtype), h, w)
    return factorised_mask(a_h, a_w)


def init_relative_tables(height_rel: nn.Parameter, width_rel: nn.Parameter, std: float, trunc: bool) -> None:
    """Initialise the two tables with N(0, std²) (``trunc``: truncated at ±2, as timm)."""
    for t in (height_rel, width_rel):
        if trunc:
            nn.init.trunc_normal_(t, std=std)
        else:
            nn.init.normal_(t, std=std)
