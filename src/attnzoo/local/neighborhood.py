"""Neighborhood Attention Transformer (Hassani, Walton, Li, Li, Shi; CVPR 2023), https://arxiv.org/abs/2204.07143,
and Dilated Neighborhood Attention Transformer (Hassani, Shi; arXiv 2022), https://arxiv.org/abs/2209.15001.

Each query attends to the ``kernel_size``² keys of its (dilated) neighbourhood; at the borders the window is
shifted inwards so that every query keeps exactly kernel² neighbours (NAT's definition, NATTEN's indexing).
Pure PyTorch, O(N·k²) memory and time, never N×N: tiles of T×T queries attend to the (T+k−1)² keys that hold
all their windows through SDPA with an additive window (+ bias) mask built from the shapes per chunk of tiles
(:func:`neighborhood_attention`); attention capture uses the per-query gather form (one query per row, k² keys).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..capture import capture_target
from ..functional.attention import sdpa
from ..layers import (
    AttnModule,
    attention,
    check_arg,
    check_rank_arg,
    check_spatial,
    fx_leaf,
    odd_kernel_nd,
    per_axis,
    positive_int,
)
from ..layers.checks import check_attention_args
from ..registry import register
from ..tracing import PortableForm, for_export, portable
from .neighborhood_windows import (
    _CHUNK,
    PerAxis,
    _chunked_gather,
    _effective,
    _gathered_attention,
    axis_values,
    neighborhood_indices,
)

__all__ = ["NeighborhoodAttention", "neighborhood_attention", "neighborhood_indices"]

#: The export targets that take the portable form (:func:`_neighborhood_portable`).
_TARGETS: tuple[str, ...] = ("ncnn",)


class _AxisTiles(NamedTuple):
    """The query tiles of one axis and the key block of each (:func:`_axis_tiles`); nt tiles of T queries, Kt keys."""

    query: torch.Tensor  # nt×T positions (the last tile of a dilation group repeats its last query)
    key: torch.Tensor  # nt×Kt positions (the clamped union of the tile's windows)
    allowed: torch.Tensor  # nt×T×Kt bool: key u is in the window of query a
    rel: torch.Tensor  # nt×T×Kt relative position index (key − query in dilated steps + kernel − 1)
    slot: torch.Tensor  # length: tile · T + a of each position (its one query slot)


def _axis_tiles(length: int, kernel: int, dilation: int, tile: int, device: torch.device) -> _AxisTiles:
    """Tiles of ``tile`` consecutive queries of one dilation group along an axis, with the key block that holds
    every window of the tile: Kt = T + k' − 1 consecutive group members starting at the first query's window start,
    clamped into the group (the windows are shifted inwards, so their union is never longer).  The windows and
    relative indices are :func:`neighborhood_indices`'s."""
    dil, k = _effective(length, kernel, dilation)
    lens = [(length - g + dil - 1) // dil for g in range(dil)]
    t_len = min(tile, max(lens))
    kt = min(t_len + k - 1, max(lens))
    pairs = [(g, j0) for g in range(dil) for j0 in range(0, lens[g], t_len)]
    g = torch.tensor([p[0] for p in pairs], device=device)[:, None]  # nt×1
    lg = torch.tensor([lens[p[0]] for p in pairs], device=device)[:, None]
    j = torch.tensor([p[1] for p in pairs], device=device)[:, None] + torch.arange(t_len, device=device)
    real = j < lg
    j = torch.minimum(j, lg - 1)
    start = torch.minimum((j - kernel // 2).clamp(min=0), lg - k)  # each query's window start (group steps)
    u = torch.minimum(start[:, :1], (lg - kt).clamp(min=0)) + torch.arange(kt, device=device)
    allowed = (u[:, None, :] >= start[:, :, None]) & (u[:, None, :] < start[:, :, None] + k) & (u < lg)[:, None, :]
    u = torch.minimum(u, lg - 1)  # keys past a short group: never allowed, any valid position
    rel = (u[:, None, :] - j[:, :, None] + kernel - 1).clamp(0, 2 * kernel - 2)
    pos = g + j * dil
    slot = torch.empty(length, dtype=torch.long, device=device)
    slot[pos[real]] = torch.arange(len(pairs) * t_len, device=device).view(-1, t_len)[real]
    return _AxisTiles(pos, g + u * dil, allowed, rel, slot)


def _tile_chunk(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    table: torch.Tensor | None,
    rows: tuple[int, int],
    tr: _AxisTiles,
    tc: _AxisTiles,
    scale: float | None,
    dropout_p: float,
) -> torch.Tensor:
    """Attention of the query tiles of tile rows ``rows = (r0, r1)`` (over B·nt_rows, image-major): q (tiles)×T²×
    heads×d, k, v (tiles)×Kt²×heads×d → (tiles)×T²×heads×d.  The mask (window, plus the relative position bias)
    is built here from the per-axis tables, so none of it outlives the chunk when it is checkpointed."""
    (ntr, t1), t2, k1, k2 = tr.query.shape, tc.query.shape[1], tr.key.shape[1], tc.key.shape[1]
    r = torch.arange(*rows, device=q.device) % ntr
    n = q.shape[0]
    # the window as an additive mask, the sum of a per-row and a per-column part: 0 inside, at most half the
    # lowest float outside (finite: exp gives exactly 0 all the same, and runtimes such as OpenVINO mishandle −inf)
    low = torch.tensor(torch.finfo(q.dtype).min / 2, dtype=q.dtype, device=q.device)
    wr = torch.where(tr.allowed[r], 0.0, low)[:, None, :, None, :, None]
    wc = torch.where(tc.allowed, 0.0, low)[None, :, None, :, None, :]
    window = (wr + wc).view(n, 1, t1 * t2, k1 * k2)
    if table is None:
        mask = window
    else:  # bias[h, (r, a, u), (c, b, v)] = onehot(rel_r) · table[h] · onehot(rel_c)ᵀ: two GEMMs (and their
        # transposes for the table's gradient) instead of an indexed gather and its scatter-add
        er = F.one_hot(tr.rel[r].reshape(-1), table.shape[-2]).to(q.dtype)  # (rows·T·Kt)×(2k_h−1)
        ec = F.one_hot(tc.rel.reshape(-1), table.shape[-1]).to(q.dtype)  # (nt_cols·T·Kt)×(2k_w−1)
        bias = torch.matmul(torch.matmul(er, table.to(q.dtype)), ec.t())  # heads×(rows·T·Kt)×(nt_cols·T·Kt)
        heads = table.shape[0]
        bias = bias.view(heads, -1, t1, k1, tc.query.shape[0], t2, k2).permute(1, 4, 0, 2, 5, 3, 6).contiguous()
        mask = bias.view(n, heads, t1 * t2, k1 * k2).add_(window)
    if not mask.requires_grad:
        return sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, scale, dropout_p).transpose(1, 2)
    # a mask that needs a gradient is never fused: the explicit product in three passes over the scores (SDPA's
    # explicit path makes about twice as many)
    heads, d = q.shape[2:]
    qh, kh, vh = (t.transpose(1, 2).reshape(n * heads, -1, d) for t in (q, k, v))
    s = torch.baddbmm(
        mask.view(n * heads, t1 * t2, -1), qh, kh.transpose(1, 2), alpha=d**-0.5 if scale is None else scale
    )
    p = F.dropout(s.softmax(-1), dropout_p, training=dropout_p > 0)
    return torch.bmm(p, vh).view(n, heads, t1 * t2, d).transpose(1, 2)


@fx_leaf
def neighborhood_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: PerAxis,
    dilation: PerAxis,
    bias_table: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    module: nn.Module | None = None,
    tile: int | None = None,
) -> torch.Tensor:
    """Neighbourhood attention: q, k, v B×heads×H×W×d (any strides) → B×heads×H×W×d; likewise over 1 or 3 spatial
    axes (B×heads×L×d, B×heads×D×H×W×d: k^d windows, shifted inwards per axis).

    ``kernel`` and ``dilation``: one int for every axis, or one per axis (e.g. (3, 7, 7) for a clip: k_D×k_H×k_W
    windows).  ``bias_table``: heads×(2k_1−1)×…×(2k_d−1) relative position bias (NAT's rpb) or None.
    Captured map (``module`` capturing): ``"attn"`` B×(heads·N)×1×k'^d probabilities.

    1-D and 3-D take the per-query gather form (in chunks of queries, checkpointed when training); in 2-D:

    Tiled: each tile of T×T queries (of one dilation group) attends to the (T+k−1)² keys that hold all its windows
    through ``scaled_dot_product_attention``, with an additive mask that keeps each query's own k² window (and
    adds its bias): (T+k−1)² scores per query instead of k², but the keys are gathered (T+k−1)²/T² times instead
    of k² times.  Queries, keys and masks are gathered and built per chunk of tile rows from the shapes.  When the
    bias needs a gradient SDPA takes its explicit path (a mask that requires grad is not fused); those chunks are
    checkpointed, so no scores are kept for the backward.  ``tile`` (T) defaults to 4, the fastest at k = 7 on
    CPU (benchmarks/neighborhood_halo.py; T = 8 costs 1.4–1.9× and T = 12 2.4–2.6×).

    ``torch.compile`` keeps these eager schedules (the same computation as eager).  Exported graphs
    (``torch.export``, runtimes: :func:`~attnzoo.tracing.for_export`, the one switch) and attention capture take
    the per-query gather in one piece: the tiles and chunks are built from the sizes as plain numbers, the gather
    keeps sizes symbolic (dynamic shapes), and the export targets were validated with it.  Compiled, the tiles
    train 2.2–7.5× faster than the one-piece gather (whose backward scatters into every key) and the 3-D chunks
    infer 1.7–2.0× faster, but the one-piece gather infers 1.2–4.8× faster in 1-D and 2-D: compile the exported
    program for that (benchmarks/results/neighborhood_compile*.md).
    """
    if module is not None or for_export():
        return _gathered_attention(q, k, v, kernel, dilation, bias_table, scale, dropout_p, module)
    if q.dim() != 5:  # 1-D, 3-D
        return _chunked_gather(q, k, v, kernel, dilation, bias_table, scale, dropout_p)
    b, heads, h, w, d = q.shape
    explicit = bias_table is not None and bias_table.requires_grad and torch.is_grad_enabled()
    tile = tile or 4
    (kh, kw), (dh, dw) = axis_values(kernel, 2), axis_values(dilation, 2)
    tr = _axis_tiles(h, kh, dh, tile, q.device)
    tc = _axis_tiles(w, kw, dw, tile, q.device)
    (ntr, t1), (ntc, t2), k1, k2 = tr.query.shape, tc.query.shape, tr.key.shape[1], tc.key.shape[1]

    def gather(t: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """B×heads×H×W×d → (B·tiles)×(rows·cols of a tile)×heads×d, image-major, then tile-row major."""
        flat = rows[:, None, :, None] * w + cols[None, :, None, :]
        flat = (torch.arange(b, device=q.device)[:, None] * (h * w) + flat.reshape(1, -1)).reshape(-1)
        return (
            t.permute(0, 2, 3, 1, 4)
            .reshape(b * h * w, heads, d)
            .index_select(0, flat)
            .view(b * ntr * ntc, -1, heads, d)
        )

    # queries once, keys and values (T+k'−1)²/T² times; torch.split hands the chunks views whose gradients one
    # backward node gathers (a slice each would allocate a full-size zero gradient per chunk)
    per_row = ntc * t1 * t2 * k1 * k2 * (heads if bias_table is not None else 1)
    step = max(1, _CHUNK // per_row)
    parts = [gather(q, tr.query, tc.query), gather(k, tr.key, tc.key), gather(v, tr.key, tc.key)]
    outs = []
    for r0, (q_c, k_c, v_c) in zip(range(0, b * ntr, step), zip(*(t.split(step * ntc) for t in parts))):
        rows = (r0, min(r0 + step, b * ntr))
        if explicit:
            o = checkpoint(_tile_chunk, q_c, k_c, v_c, bias_table, rows, tr, tc, scale, dropout_p, use_reentrant=False)
        else:
            o = _tile_chunk(q_c, k_c, v_c, bias_table, rows, tr, tc, scale, dropout_p)
        outs.append(o)
    out = torch.cat(outs).reshape(b, ntr * ntc * t1 * t2, heads, d)  # inductor may lay out the cat strided
    # back to the map: position (y, x) is slot (tile row, tile col, a, c) of the tile layout
    r, c = tr.slot, tc.slot
    inv = ((r // t1 * ntc)[:, None] + (c // t2)[None, :]) * (t1 * t2) + (r % t1 * t2)[:, None] + (c % t2)[None, :]
    return out.index_select(1, inv.reshape(-1)).view(b, h, w, heads, d).permute(0, 3, 1, 2, 4)


def _shifted_pads(length: int, kernel: int) -> tuple[int, int, int]:
    """Dilation 1 along one axis: ``(k', before, after)`` such that neighbour t of every query is
    ``replicate_pad(axis[t : t + length − k' + 1], before, after)`` (the window starts clamp(i − k//2, 0, L − k')
    of :func:`neighborhood_indices`, written as a slice whose first and last start are repeated)."""
    k = min(kernel, length)
    if length == k:  # every query uses the whole axis: one start, repeated
        return k, 0, length - 1
    starts = [min(max(i - kernel // 2, 0), length - k) for i in range(length)]
    return k, starts.count(0) - 1, starts.count(length - k) - 1


def _neighborhood_portable(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    kernel: PerAxis,
    bias_table: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """:func:`neighborhood_attention` at dilation 1 in the portable form: q, k, v B×(heads·d)×H×W maps →
    B×H×W×(heads·d), with at most 5 axes and no index_select on activations (ncnn): neighbour (t, s) of every
    query is a slice of the key / value map, replicate-padded (the windows shifted inwards at the borders)."""
    b, c, h, w = q.shape
    d = c // heads
    kernel_h, kernel_w = axis_values(kernel, 2)
    kh, top, bottom = _shifted_pads(h, kernel_h)
    kw, left, right = _shifted_pads(w, kernel_w)
    n, m = h * w, kh * kw

    def gather(t: torch.Tensor) -> torch.Tensor:  # B×(heads·d)×H×W → B×(heads·N)×m×d
        views = []
        for i in range(kh):
            for j in range(kw):
                view = t[:, :, i : i + h - kh + 1, j : j + w - kw + 1]
                # an axis no longer than the window: its one start broadcast (not a replicate pad of 1 row)
                view = view.expand(-1, -1, h if h == kh else -1, w if w == kw else -1)
                pads = (0, 0) if w == kw else (left, right), (0, 0) if h == kh else (top, bottom)
                if any(pads[0]) or any(pads[1]):
                    view = F.pad(view, (*pads[0], *pads[1]), mode="replicate")
                views.append(view)
        g = torch.stack(views, dim=1).reshape(b, m, heads, d, n)  # B×m×heads×d×N
        return g.permute(0, 2, 4, 1, 3).reshape(b, heads * n, m, d)

    qs = q.reshape(b, heads, d, n).transpose(2, 3).reshape(b, heads * n, 1, d)
    mask = None
    if bias_table is not None:
        ridx, rrel = neighborhood_indices(h, kernel_h, 1, q.device)
        cidx, crel = neighborhood_indices(w, kernel_w, 1, q.device)
        side = bias_table.shape[-1]
        rel = (rrel[:, None, :, None] * side + crel[None, :, None, :]).reshape(-1)
        mask = bias_table.reshape(heads, -1).index_select(1, rel).view(1, heads * n, 1, m).to(q.dtype)
    out = attention(qs, gather(k), gather(v), mask=mask, scale=scale)  # B×(heads·N)×1×d
    return out.reshape(b, heads, n, d).transpose(1, 2).reshape(b, h, w, heads * d)


@register(
    "neighborhood",
    family="local",
    paper="Neighborhood Attention Transformer (Hassani, Walton, Li, Li, Shi; CVPR 2023) / Dilated Neighborhood Attention Transformer (Hassani, Shi; arXiv 2022)",
    url="https://arxiv.org/abs/2204.07143",
    complexity="O(N·k^d)",
    summary="Each query attends to its k×k (dilated) neighbourhood, windows shifted inwards at borders; relative position bias.",
    test_kwargs={"heads": 2, "kernel_size": 3},
    maps=("attn",),
    dims=(1, 2, 3),
    exceptions_by_dims={
        3: {
            "ncnn": "the 3-D neighbourhoods are gathered per query (index_select on B×heads×D×H×W×d views) and ncnn "
            "has no gather and at most 4 axes besides the batch (pnnx: 'unbind along batch axis 0 is not "
            "supported'); the 2-D form of shifted slices would stack k³ of them on a 6-axis view"
        }
    },
    forms=(
        PortableForm(
            targets=_TARGETS,
            marker="aten::stack",
            reason="the eager form gathers each query's neighbours with index_select on the activations; ncnn has "
            "no gather (the portable form: replicate-padded slices, at effective dilation 1, in eval mode)",
            cases=({}, {"kernel_size": 7, "dilation": 2}, {"kernel_size": 9, "position_bias": False}),
            eval_only=True,
        ),
    ),
)
class NeighborhoodAttention(AttnModule):
    """Neighborhood attention (NAT) / dilated neighborhood attention (DiNAT); B×C×H×W → B×C×H×W (``dims=1``: B×C×L,
    ``dims=3``: B×C×D×H×W).

    Per head: ``o_i = softmax(q_i K_{ρ(i)}ᵀ · d^-0.5 + B(i, ρ(i))) V_{ρ(i)}`` where ρ(i) is the k×k neighbourhood
    of pixel i with dilation δ, shifted inwards at the borders so every query has exactly k² neighbours, and B
    the relative position bias (a (2k−1)×(2k−1) table per head, NAT's ``rpb``, truncated-normal std 0.02).
    qkv is one Linear (with bias, as NAT), heads concatenated, output Linear.  No norm and no residual inside.

    Inputs smaller than the window: an axis shorter than k·δ uses dilation ``max(1, L // k)``, and one shorter
    than k attends to the whole axis (the window shrinks to the input; NAT pads such inputs with zeros that
    become attended tokens, NATTEN raises).  See docs/provenance/neighborhood.md.

    ``dims=1`` / ``dims=3`` (NATTEN's na1d / na3d windows): k / k³ neighbours, each axis shifted inwards as
    above, a (2k−1) / (2k−1)³ bias table per head.  A signal runs as a 1×L map (its table is the centre row of
    the 2-D one: the tiled form, and the ncnn portable form).  A volume takes the per-query gather form: memory
    O(N·k³·dim), no N×N, and no ncnn form (ncnn has no gather).  Both train on CPU (NATTEN ≥ 0.20 has no CPU
    backward).

    Per axis (NATTEN's tuple ``kernel_size`` / ``dilation``): ``kernel_size=(3, 7, 7)`` gives a clip 3×7×7
    windows, each axis shifted inwards and shrunk as above, and a (2k_1−1)×…×(2k_d−1) bias table per head.  An int
    is the same on every axis (2-D state dicts unchanged).

    Args:
        channels: C.
        kernel_size: odd window size k (NAT: 7), or one odd size per axis (e.g. ``(3, 7, 7)`` for D×H×W).
        dilation: δ ≥ 1 (DiNAT alternates 1 and a dilation that makes the window cover the map), or one per axis.
        heads: attention heads.
        dim_head: width per head; ``None`` = C // heads.
        qkv_bias: bias in the qkv projection (NAT: True).
        position_bias: the relative position bias table (NAT's ``rpb``; True).
        attn_drop, proj_drop: dropout on the probabilities and after the output projection.
        dims: spatial rank of the input (1, 2 or 3).

    Attention maps: ``"attn"`` B×(heads·N)×1×k^d (∏ k_a per axis), each query's probabilities over its neighbours (row-major).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | tuple[int, ...] = 7,
        dilation: int | tuple[int, ...] = 1,
        heads: int = 8,
        dim_head: int | None = None,
        qkv_bias: bool = True,
        position_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        *,
        dims: int = 2,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.dims = check_rank_arg(dims, owner)
        dim_head, self.attn_drop, proj_drop = check_attention_args(
            owner, channels, heads, dim_head=dim_head, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )
        # one side (and dilation) per axis: (k_1, …, k_d), each odd; an int is the same on every axis
        self._kernel = odd_kernel_nd(kernel_size, self.dims, owner)
        self._dilation = per_axis(dilation, self.dims, owner, "dilation")
        if isinstance(dilation, int):
            positive_int(dilation, owner, "dilation")
        check_arg(min(self._dilation) >= 1, owner, "dilation", "positive integers, one per axis", dilation)
        check_arg(isinstance(position_bias, bool), owner, "position_bias", "a bool", position_bias)
        self.channels, self.kernel_size, self.dilation = channels, kernel_size, dilation
        self.heads, self.dim_head, self.qkv_bias, self.position_bias = heads, dim_head, qkv_bias, position_bias
        inner = heads * dim_head
        self.scale = dim_head**-0.5
        self.qkv = nn.Linear(channels, 3 * inner, bias=qkv_bias)
        if position_bias:
            self.rpb = nn.Parameter(torch.zeros(heads, *(2 * k - 1 for k in self._kernel)))
            nn.init.trunc_normal_(self.rpb, std=0.02, a=-2.0, b=2.0)
        else:
            self.register_parameter("rpb", None)
        self.proj = nn.Linear(inner, channels)
        self.proj_drop = nn.Dropout(proj_drop)

    @staticmethod
    def _dilation_one(size: tuple[int, int], kernel: tuple[int, ...], dilation: tuple[int, ...]) -> bool:
        """Is the effective dilation 1 on both axes (what the portable form handles)?"""
        return all(d == 1 or n < k * 2 for n, k, d in zip(size, kernel, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        if self.dims == 3:
            return self._forward_3d(x)
        if self.dims == 1:  # a 1×L map with 1×k windows and a 1×(2k−1) table
            table = None if self.rpb is None else self.rpb[:, None]
            return self._forward_2d(x.unsqueeze(2), table, (1, *self._kernel), (1, *self._dilation)).squeeze(2)
        return self._forward_2d(x, self.rpb, self._kernel, self._dilation)

    def _forward_2d(
        self, x: torch.Tensor, rpb: torch.Tensor | None, kernel: tuple[int, ...], dilation: tuple[int, ...]
    ) -> torch.Tensor:
        b, _, h, w = x.shape
        dilation_one = self._dilation_one((h, w), kernel, dilation)
        if portable(*_TARGETS) and not self.training and dilation_one and capture_target(self) is None:
            # projections on B×N×C tokens (a Linear on 4 axes costs ncnn a slow shape-referencing reshape)
            qkv = self.qkv(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
            q, k, v = qkv.chunk(3, dim=1)  # B×(heads·d)×H×W each
            out = _neighborhood_portable(q, k, v, self.heads, kernel, rpb, self.scale)
            out = self.proj_drop(self.proj(out.reshape(b, h * w, -1)))
            return out.transpose(1, 2).reshape(b, -1, h, w)
        qkv = self.qkv(x.permute(0, 2, 3, 1))  # B×H×W×3·inner
        # B×H×W×3×heads×d → 3 × (B×heads×H×W×d) views
        q, k, v = qkv.view(b, h, w, 3, self.heads, self.dim_head).permute(3, 0, 4, 1, 2, 5).unbind(0)
        out = neighborhood_attention(
            q,
            k,
            v,
            kernel,
            dilation,
            rpb,
            self.scale,
            self.attn_drop if self.training else 0.0,
            capture_target(self),
        )
        out = out.permute(0, 2, 3, 1, 4).reshape(b, h, w, self.heads * self.dim_head)
        return self.proj_drop(self.proj(out)).permute(0, 3, 1, 2)

    def _forward_3d(self, x: torch.Tensor) -> torch.Tensor:
        """3-D: the same projections on channels-last positions, attention in the gather form."""
        n = self.dims
        b, size = x.shape[0], [x.shape[2 + i] for i in range(n)]
        qkv = self.qkv(x.permute(0, *range(2, n + 2), 1))  # B×(spatial)×3·inner
        # B×(spatial)×3×heads×d → 3 × (B×heads×(spatial)×d) views
        qkv = qkv.view(b, *size, 3, self.heads, self.dim_head).permute(n + 1, 0, n + 2, *range(1, n + 1), n + 3)
        q, k, v = qkv.unbind(0)
        out = neighborhood_attention(
            q,
            k,
            v,
            self._kernel,
            self._dilation,
            self.rpb,
            self.scale,
            self.attn_drop if self.training else 0.0,
            capture_target(self),
        )
        out = out.permute(0, *range(2, n + 2), 1, n + 2).reshape(b, *size, self.heads * self.dim_head)
        return self.proj_drop(self.proj(out)).permute(0, n + 1, *range(1, n + 1))
