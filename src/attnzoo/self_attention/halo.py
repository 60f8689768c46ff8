"""Scaling Local Self-Attention for Parameter Efficient Visual Backbones (HaloNet; Vaswani, Ramachandran,
Srinivas, Parmar, Hechtman, Shlens; CVPR 2021).

Paper: https://arxiv.org/abs/2103.12731 (no official code; timm's ``HaloAttn`` is the reference copy).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..capture import capture_target
from ..functional.windows import (
    grouped_attention,
    merge_group_heads,
    merge_windows,
    partition_windows,
    split_group_heads,
)
from ..layers import (
    AttnModule,
    attention,
    check_arg,
    check_nchw,
    fx_leaf,
    non_negative_int,
    positive_int,
    resolve_dim_head,
)
from ..layers.checks import check_attention_args
from ..registry import register
from ..tracing import PortableForm, portable

__all__ = ["HaloAttention"]

#: The export targets that take the portable form (:func:`_halo_portable`).
_TARGETS: tuple[str, ...] = ("ncnn",)


def _axis_valid(blocks: int, block: int, halo: int, size: int, device: torch.device) -> torch.Tensor:
    """blocks×win bool: is key offset j of block i's window inside the image (row i·block − halo + j ∈ [0, size))?"""
    pos = torch.arange(blocks, device=device)[:, None] * block + torch.arange(block + 2 * halo, device=device)[None, :]
    return (pos >= halo) & (pos < size + halo)


def _rel_table(table: torch.Tensor, block: int, win: int) -> torch.Tensor:
    """block×win×d: row ``key − query + block − 1`` of the relative table for query offset i and key offset j."""
    idx = (
        torch.arange(win, device=table.device)[None, :] - torch.arange(block, device=table.device)[:, None] + block - 1
    )
    return table[idx]


class _Halo(NamedTuple):
    """The layers and sizes of one :class:`HaloAttention` (one FX-leaf argument: FX records its layers)."""

    q: nn.Conv2d
    kv: nn.Conv2d
    height_rel: torch.Tensor
    width_rel: torch.Tensor
    block_size: int
    halo_size: int
    heads: int
    dim_head: int
    dim_head_v: int


def _grid(h: int, w: int, bs: int, halo: int) -> tuple[int, int, int, int, int]:
    """The haloed window side ``win``, the block grid ``nh×nw`` and the padded size ``hp×wp`` of an H×W map."""
    nh, nw = (h + bs - 1) // bs, (w + bs - 1) // bs
    return bs + 2 * halo, nh, nw, nh * bs, nw * bs


def _key_valid(nh: int, nw: int, bs: int, halo: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """nh×nw×win×win bool: is key (ky, kx) of block (i, j)'s window inside the H×W image?"""
    return (
        _axis_valid(nh, bs, halo, h, device)[:, None, :, None] & _axis_valid(nw, bs, halo, w, device)[None, :, None, :]
    )


#: Elements of the widened keys per chunk of blocks in :func:`_halo` (about 4 MiB in float32).
_CHUNK = 1 << 20


def _halo_chunk(
    q: torch.Tensor,
    kv: torch.Tensor,
    rows: tuple[int, int, int],
    height_rel: torch.Tensor,
    width_rel: torch.Tensor,
    valid: torch.Tensor | None,
    dqk: int,
    owner: nn.Module | None,
) -> torch.Tensor:
    """Attention of the blocks of block rows ``r0:r1`` of image ``i`` (``rows = (i, r0, r1)``; i = −1: every
    image): q n×heads×bs×bs×dqk, kv the padded B×(hp+2h)×(wp+2h)×heads·(dqk+dv) map, valid n×win² (or None)
    → n×heads×bs²×dv."""
    n, heads, bs = q.shape[:3]
    win = height_rel.shape[0] - bs + 1
    i, r0, r1 = rows
    kv = kv[:, r0 * bs : (r1 - 1) * bs + win] if i < 0 else kv[i : i + 1, r0 * bs : (r1 - 1) * bs + win]
    kv = kv.unfold(1, win, bs).unfold(2, win, bs)  # B'×rows×nw×C'×win×win (views)
    kv = kv.permute(0, 1, 2, 4, 5, 3).reshape(n, win * win, heads, -1).transpose(1, 2)
    k, v = kv[..., :dqk], kv[..., dqk:]
    # relative logits q·r_h[ky − qy] + q·r_w[kx − qx] as extra q/k columns: q' = [q·scale, A_h, A_w],
    # k' = [k, onehot(ky), onehot(kx)], so q'·k' = scale·q·k + A_h[ky] + A_w[kx] and SDPA stays fused
    a_h = torch.einsum("nhyxd,ykd->nhyxk", q, _rel_table(height_rel, bs, win))
    a_w = torch.einsum("nhyxd,xkd->nhyxk", q, _rel_table(width_rel, bs, win))
    q2 = torch.cat([q * dqk**-0.5, a_h, a_w], dim=-1).view(n, heads, bs * bs, dqk + 2 * win)
    eye = torch.eye(win, dtype=k.dtype, device=k.device)
    onehot = torch.cat([eye[:, None, :].expand(win, win, win), eye[None, :, :].expand(win, win, win)], dim=-1)
    k2 = torch.cat([k, onehot.reshape(1, 1, win * win, 2 * win).expand(n, heads, -1, -1)], dim=-1)
    mask = None
    if valid is not None:  # keys outside the image never take part (additive, finite: no NaN)
        mask = torch.zeros(n, 1, 1, win * win, dtype=q2.dtype, device=q.device)
        mask = mask.masked_fill(~valid.view(n, 1, 1, -1), torch.finfo(q2.dtype).min)
    return attention(q2, k2, v, mask=mask, scale=1.0, module=owner, key="attn")


@fx_leaf
def _halo(x: torch.Tensor, m: _Halo, owner: nn.Module | None) -> torch.Tensor:
    """Halo attention ``m`` on ``x``; ``owner`` records the map."""
    if portable(*_TARGETS):
        return _halo_portable(x, m, owner)
    b, _, h, w = x.shape
    bs, halo, heads, dqk, dv = m.block_size, m.halo_size, m.heads, m.dim_head, m.dim_head_v
    win, nh, nw, hp, wp = _grid(h, w, bs, halo)
    nb = nh * nw
    t = x.permute(0, 2, 3, 1)  # B×H×W×C
    # queries: whole blocks (bottom/right zero padding; padded queries are dropped at the end)
    q = F.linear(t, m.q.weight.flatten(1), m.q.bias)
    q = F.pad(q, (0, 0, 0, wp - w, 0, hp - h))
    q = q.view(b, nh, bs, nw, bs, heads, dqk).permute(0, 1, 3, 5, 2, 4, 6).reshape(b * nb, heads, bs, bs, dqk)
    # keys / values: the block plus a halo of `halo` pixels on each side (zero padded, masked below)
    kv = F.linear(t, m.kv.weight.flatten(1), m.kv.bias)
    kv = F.pad(kv, (0, 0, halo, wp - w + halo, halo, hp - h + halo))
    valid = None
    if halo > 0 or hp != h or wp != w:  # keys outside the image never take part
        valid = _key_valid(nh, nw, bs, halo, h, w, x.device).reshape(nh, nw * win * win)
    # blocks in chunks of block rows of one image, each checkpointed when gradients are on: the haloed windows
    # (keys and values (b+2h)²/b² times over), the q/k columns of the relative logits and v padded to their
    # width exist for one chunk at a time (one chunk of all blocks when capturing: one map)
    rows = nh if owner is not None else max(1, _CHUNK // (nw * heads * win * win * (dqk + 2 * win)))
    chunks = [(i, r, min(r + rows, nh)) for i in range(b) for r in range(0, nh, rows)]
    if owner is not None and b > 1:
        chunks = [(-1, 0, nh)]
    outs = []
    for (i, r0, r1), q_c in zip(chunks, q.split([(r1 - r0) * nw * (b if i < 0 else 1) for i, r0, r1 in chunks])):
        v_c = None if valid is None else valid[r0:r1].repeat(b if i < 0 else 1, 1)
        args = (q_c, kv, (i, r0, r1), m.height_rel, m.width_rel, v_c, dqk, owner)
        if torch.is_grad_enabled() and len(chunks) > 1:
            outs.append(checkpoint(_halo_chunk, *args, use_reentrant=False))
        else:
            outs.append(_halo_chunk(*args))
    o = torch.cat(outs) if len(outs) > 1 else outs[0]  # (B·nb)×heads×bs²×dv
    o = o.reshape(b, nh, nw, heads, bs, bs, dv).permute(0, 3, 6, 1, 4, 2, 5).reshape(b, heads * dv, hp, wp)
    if hp != h or wp != w:
        o = o[:, :, :h, :w]
    return o.contiguous()


def _halo_portable(x: torch.Tensor, m: _Halo, owner: nn.Module | None) -> torch.Tensor:
    """:func:`_halo` in the portable form: at most 5 axes, blocks and heads on one axis G (never folded into the
    batch: ncnn has none), the k×k neighbourhoods by ``F.unfold``, the relative logits as per-row / per-column
    slices of q·tableᵀ, and the padding mask as one more q/k column (:func:`grouped_attention`) instead of an SDPA
    mask."""
    b, _, h, w = x.shape
    bs, halo, heads, dqk, dv = m.block_size, m.halo_size, m.heads, m.dim_head, m.dim_head_v
    win, nh, nw, hp, wp = _grid(h, w, bs, halo)
    g = nh * nw * heads
    q = m.q(x)  # B×(heads·dqk)×H×W
    if hp != h or wp != w:
        q = F.pad(q, (0, wp - w, 0, hp - h))
    q = split_group_heads(partition_windows(q, bs), heads)  # B×G×bs²×dqk
    kv = F.pad(m.kv(x), (halo, wp - w + halo, halo, hp - h + halo))
    kv = F.unfold(kv, win, stride=bs).reshape(b, heads, dqk + dv, win * win, nh * nw)
    kv = kv.permute(0, 4, 1, 3, 2).reshape(b, g, win * win, dqk + dv)  # B×G×win²×(dqk+dv)
    k, v = kv[..., :dqk], kv[..., dqk:]
    # relative logits: q·table[key − query + bs − 1] is, for query row y, columns bs−1−y … of q·tableᵀ
    # (on B×(G·bs²)×dqk rows: a product with a weight on 4 axes becomes, in ncnn, a Gemm plus a slow
    # shape-referencing reshape)
    q_rows = q.reshape(b, g * bs * bs, dqk)
    p_h = (q_rows @ m.height_rel.t()).reshape(b, g, bs, bs, -1)
    p_w = (q_rows @ m.width_rel.t()).reshape(b, g, bs, bs, -1)
    a_h = torch.cat([p_h[:, :, y : y + 1, :, bs - 1 - y : bs - 1 - y + win] for y in range(bs)], dim=2)
    a_w = torch.cat([p_w[:, :, :, i : i + 1, bs - 1 - i : bs - 1 - i + win] for i in range(bs)], dim=3)
    parts_q = [q * dqk**-0.5, a_h.reshape(b, g, bs * bs, win), a_w.reshape(b, g, bs * bs, win)]
    eye = torch.eye(win, dtype=k.dtype, device=k.device)
    onehot = torch.cat([eye[:, None, :].expand(win, win, win), eye[None, :, :].expand(win, win, win)], dim=-1)
    parts_k = [k, onehot.reshape(1, 1, win * win, 2 * win).expand(b, g, -1, -1)]
    valid = None
    if halo > 0 or hp != h or wp != w:  # keys outside the image never take part
        valid = _key_valid(nh, nw, bs, halo, h, w, x.device).reshape(nh * nw, 1, win * win)
        valid = valid.expand(-1, heads, -1).reshape(g, win * win)
    attend = functools.partial(attention, module=owner, key="attn")
    o = grouped_attention(torch.cat(parts_q, dim=-1), torch.cat(parts_k, dim=-1), v, 1, 1.0, valid, attend=attend)
    o = merge_windows(merge_group_heads(o, heads), bs, nh, nw)  # B×(heads·dv)×hp×wp
    if hp != h or wp != w:
        o = o[:, :, :h, :w]
    return o


@register(
    "halo",
    family="self_attention",
    paper="Scaling Local Self-Attention for Parameter Efficient Visual Backbones (HaloNet; Vaswani et al.; CVPR 2021)",
    url="https://arxiv.org/abs/2103.12731",
    complexity="O(N·(b+2h)²)",
    summary="Blocked local self-attention: each b×b block of queries attends to its (b+2h)² haloed neighbourhood, relative position logits; padded keys masked.",
    test_kwargs={"block_size": 4, "halo_size": 1, "heads": 2},
    maps=("attn",),
    forms=(
        PortableForm(
            targets=_TARGETS,
            marker="aten::im2col",
            reason="the eager form folds the blocks into the batch through 7-axis views and gathers the haloed "
            "neighbourhoods with Tensor.unfold; ncnn has no batch axis and at most 5 axes",
            cases=({}, {"halo_size": 0}, {"halo_size": 2, "heads": 4, "dim_head": 8}),
        ),
    ),
)
class HaloAttention(AttnModule):
    """HaloNet blocked local self-attention; B×C×H×W → B×C×H×W.

    The map is cut into ``block_size`` × ``block_size`` query blocks; each block attends to its neighbourhood
    of (b + 2h)² positions (the block plus a halo of ``halo_size`` pixels).  Per head,
    ``softmax(q·k / √dim_head + q·r_h[Δy] + q·r_w[Δx]) v`` with relative height/width embeddings (as timm's
    ``HaloAttn``: the position logits are not scaled).  q: 1×1 conv C → heads·dim_head; kv: 1×1 conv
    C → heads·(dim_head + C/heads), laid out per head [k | v] (timm's layout); no output projection (the
    HaloNet bottleneck's next 1×1 conv does it), so the output has C = heads · C/heads channels.

    Any H×W: the map is zero-padded to whole blocks and by the halo, and every padded key is masked (additive
    finite mask), so nothing attends to padding (timm asserts divisibility and attends to its zero halo padding
    at the border; External-Attention's copy inverts its mask).  A map smaller than a block is one padded block:
    every position then attends to the whole map.  Cost O(N·(b+2h)²).

    Args:
        channels: C (divisible by ``heads``).
        block_size: b (official 8).
        halo_size: h (official 3; 0 = plain non-overlapping block attention).
        heads: attention heads.
        dim_head: q/k width per head (``None`` = C // heads); v width per head is C // heads.
        qkv_bias: bias in the q and kv convs.

    Captured map: ``"attn"`` (B·blocks)×heads×b²×(b+2h)², padded keys with weight 0.  See
    docs/provenance/halo.md for the differences from timm and External-Attention.
    """

    def __init__(
        self,
        channels: int,
        block_size: int = 8,
        halo_size: int = 3,
        heads: int = 8,
        dim_head: int | None = None,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        owner = self.owner
        dim_head_v = check_attention_args(owner, channels, heads, qkv_bias=qkv_bias).dim_head
        dim_head = resolve_dim_head(channels, heads, dim_head, owner)
        positive_int(block_size, owner, "block_size")
        non_negative_int(halo_size, owner, "halo_size")
        check_arg(
            block_size <= 256 and halo_size <= 256,
            owner,
            "block_size and halo_size",
            "at most 256",
            (block_size, halo_size),
        )
        self.channels, self.block_size, self.halo_size, self.heads = channels, block_size, halo_size, heads
        self.dim_head, self.dim_head_v = dim_head, dim_head_v
        self.scale = dim_head**-0.5
        self.q = nn.Conv2d(channels, heads * dim_head, 1, bias=qkv_bias)
        self.kv = nn.Conv2d(channels, heads * (dim_head + self.dim_head_v), 1, bias=qkv_bias)
        rel = 2 * (block_size + halo_size) - 1  # relative offsets key − query in [−(b+h−1), b+h−1]
        self.height_rel = nn.Parameter(torch.empty(rel, dim_head))
        self.width_rel = nn.Parameter(torch.empty(rel, dim_head))
        std = channels**-0.5  # timm: truncated normal, fan-in std for the convs, dim_head^-½ for the tables
        nn.init.trunc_normal_(self.q.weight, std=std)
        nn.init.trunc_normal_(self.kv.weight, std=std)
        nn.init.trunc_normal_(self.height_rel, std=self.scale)
        nn.init.trunc_normal_(self.width_rel, std=self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        m = _Halo(
            self.q,
            self.kv,
            self.height_rel,
            self.width_rel,
            self.block_size,
            self.halo_size,
            self.heads,
            self.dim_head,
            self.dim_head_v,
        )
        return _halo(x, m, capture_target(self))

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, block_size={self.block_size}, halo_size={self.halo_size}, heads={self.heads}, "
            f"dim_head={self.dim_head}"
        )
