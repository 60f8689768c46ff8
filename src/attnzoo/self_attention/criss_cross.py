"""CCNet: Criss-Cross Attention for Semantic Segmentation (Huang, Wang, Huang, Huang, Wei, Liu; ICCV 2019 / TPAMI 2020).

Paper: https://arxiv.org/abs/1811.11721 — official code: https://github.com/speedinghzl/CCNet (``cc_attention``).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ..capture import capture_target, record
from ..layers import AttnModule, check_channels_rank, check_spatial, fx_leaf, hidden_width, positive_int
from ..registry import register

__all__ = ["CrissCrossAttention", "criss_cross", "criss_cross_3d"]


def criss_cross(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, owner: nn.Module | None = None) -> torch.Tensor:
    """Criss-cross attention on channels-last maps q, k: B×H×W×c, v: B×H×W×C → B×H×W×C.

    Position (h, w) attends jointly (one softmax) to the H positions of its column and the W positions of its
    row, itself counted once: the column branch drops the self position (as the official code's −∞ diagonal,
    here the dtype's most negative finite value added to it, so no −∞ and no NaN, also when H = 1).
    Memory B·H·W·(H+W), never B·N·N.  When ``owner`` is capturing, records ``"attn"`` B×H×W×(H+W−1): the
    column weights without the self entry, then the row weights.
    """
    b, h, w, _ = q.shape
    e_col = q.transpose(1, 2) @ k.permute(0, 2, 3, 1)  # B×W×H×H' (per column)
    e_row = q @ k.transpose(-1, -2)  # B×H×W×W' (per row)
    acc = torch.promote_types(e_row.dtype, torch.float32)
    diag = torch.eye(h, dtype=torch.bool, device=q.device)
    # additive, not masked_fill (ncnn has none; as fast): the lowest value + a logit rounds to it, same probabilities
    e_col = e_col.to(acc) + diag.to(acc) * torch.finfo(acc).min
    p = torch.cat([e_col.transpose(1, 2), e_row.to(acc)], dim=-1).softmax(-1).to(v.dtype)  # B×H×W×(H+W)
    p_col, p_row = p.split([h, w], dim=-1)  # split, not two slices: its backward is one cat, not two zero-filled copies
    if owner is not None:
        keep = ~diag[None, :, None, :].expand(b, h, w, h)
        col = p_col.masked_select(keep).view(b, h, w, h - 1)
        record(owner, "attn", torch.cat([col, p_row], dim=-1))
    out_col = p_col.transpose(1, 2) @ v.transpose(1, 2)  # B×W×H×C
    return out_col.transpose(1, 2) + p_row @ v


def criss_cross_3d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, owner: nn.Module | None = None) -> torch.Tensor:
    """Criss-cross attention over the three axis lines of a volume: q, k B×c×D×H×W, v B×C×D×H×W → B×C×D×H×W.

    Position (d, h, w) attends jointly (one softmax) to the D + H + W − 2 positions of its depth, height and width
    lines, itself counted once (the depth and height branches drop the self position, as the 2-D column branch;
    CCNet's community 3-D port masks only one branch and counts it twice).  Every view has rank ≤ 4: a line
    branch folds the two other axes into one (the width branch reads the map as B×c×(D·H)×W, the height branch
    as B×c×(D·W)×H, the depth branch as B×c×D×(H·W)), and the joint softmax runs on B×(D·H)×W×(D+H+W).
    Memory B·N·(D+H+W), never B·N·N.  When ``owner`` is capturing, records ``"attn"`` B×D×H×W×(D+H+W−2): the
    depth weights without self, the height weights without self, then the width weights.
    """
    b, c, dd, h, w = q.shape
    cv = v.shape[1]

    def w_line(t: torch.Tensor) -> torch.Tensor:  # B×ch×D×H×W → B×(D·H)×W×ch
        return t.reshape(b, -1, dd * h, w).permute(0, 2, 3, 1)

    def h_line(t: torch.Tensor) -> torch.Tensor:  # → B×(D·W)×H×ch
        ch = t.shape[1]
        return t.reshape(b, ch * dd, h, w).transpose(2, 3).reshape(b, ch, dd * w, h).permute(0, 2, 3, 1)

    def d_line(t: torch.Tensor) -> torch.Tensor:  # → B×(H·W)×D×ch
        return t.reshape(b, -1, dd, h * w).permute(0, 3, 2, 1)

    acc = torch.promote_types(q.dtype, torch.float32)
    low = torch.finfo(acc).min
    e_w = (w_line(q) @ w_line(k).transpose(-1, -2)).to(acc)  # B×DH×W×W'
    e_h = (h_line(q) @ h_line(k).transpose(-1, -2)).to(acc)  # B×DW×H×H'
    e_d = (d_line(q) @ d_line(k).transpose(-1, -2)).to(acc)  # B×HW×D×D'
    # self once: additive lowest value on the depth and height diagonals (no masked_fill, no −inf, as the 2-D form)
    e_h = e_h + torch.eye(h, dtype=acc, device=q.device) * low
    e_d = e_d + torch.eye(dd, dtype=acc, device=q.device) * low
    # all three in the width branch's position order (d, h) × w
    e_h = e_h.reshape(b * dd, w, h, h).transpose(1, 2).reshape(b, dd * h, w, h)
    e_d = e_d.transpose(1, 2).reshape(b, dd * h, w, dd)
    p = torch.cat([e_d, e_h, e_w], dim=-1).softmax(-1).to(v.dtype)  # B×DH×W×(D+H+W)
    p_d, p_h, p_w = p.split([dd, h, w], dim=-1)
    if owner is not None:
        keep_d = ~torch.eye(dd, dtype=torch.bool, device=q.device)[:, None, None, :].expand(dd, h, w, dd)
        keep_h = ~torch.eye(h, dtype=torch.bool, device=q.device)[None, :, None, :].expand(dd, h, w, h)
        pd_ = p_d.reshape(b, dd, h, w, dd).masked_select(keep_d).view(b, dd, h, w, dd - 1)
        ph_ = p_h.reshape(b, dd, h, w, h).masked_select(keep_h).view(b, dd, h, w, h - 1)
        record(owner, "attn", torch.cat([pd_, ph_, p_w.reshape(b, dd, h, w, w)], dim=-1))
    p_h = p_h.reshape(b * dd, h, w, h).transpose(1, 2).reshape(b, dd * w, h, h)
    p_d = p_d.reshape(b, dd, h * w, dd).transpose(1, 2)  # B×HW×D×D'
    o_w = (p_w @ w_line(v)).permute(0, 3, 1, 2).reshape(b, cv, dd, h, w)
    o_h = (p_h @ h_line(v)).permute(0, 3, 1, 2).reshape(b, cv * dd, w, h).transpose(2, 3).reshape(b, cv, dd, h, w)
    o_d = (p_d @ d_line(v)).permute(0, 3, 2, 1).reshape(b, cv, dd, h, w)
    return o_d + o_h + o_w


@fx_leaf
def _cca(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gamma: torch.Tensor, c: int, owner: nn.Module | None
) -> torch.Tensor:
    # a 1×1 convolution, not a linear on the channels-last view: it tells pnnx which axis is ncnn's (absent) batch
    # axis, and is as fast (benchmarks/export_forms.py)
    qkv = nn.functional.conv2d(x, weight[:, :, None, None], bias).permute(0, 2, 3, 1)
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    y = criss_cross(q, k, v, owner)
    return x + gamma * y.permute(0, 3, 1, 2)


@fx_leaf
def _cca_1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gamma: torch.Tensor, c: int, owner: nn.Module | None
) -> torch.Tensor:
    """A B×C×L signal as a 1×L map: its one line is the whole signal (full 1-D attention, self once)."""
    return _cca(x.unsqueeze(2), weight, bias, gamma, c, owner).squeeze(2)


@fx_leaf
def _cca_3d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gamma: torch.Tensor, c: int, owner: nn.Module | None
) -> torch.Tensor:
    qkv = nn.functional.conv3d(x, weight[:, :, None, None, None], bias)
    q, k, v = qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]
    return x + gamma * criss_cross_3d(q, k, v, owner)


#: One criss-cross step per spatial rank.
_STEP = {1: _cca_1d, 2: _cca, 3: _cca_3d}


@register(
    "criss_cross",
    family="self_attention",
    paper="CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al.; ICCV 2019)",
    url="https://arxiv.org/abs/1811.11721",
    complexity="O(N·Σ axis sizes)",
    summary="Each position attends to the H+W−1 positions of its row and column (one softmax); γ=0 residual; recurrence 2 = RCCA.",
    identity_at_init=True,
    maps=("attn",),
    dims=(1, 2, 3),
)
class CrissCrossAttention(AttnModule):
    """Criss-cross attention (CCNet CCA); B×C×H×W → B×C×H×W (``dims=1``: B×C×L, ``dims=3``: B×C×D×H×W).

    ``y = x + γ · Σ_{u ∈ row(p) ∪ col(p)} softmax_u(q_p · k_u) v_u`` with q, k = 1×1 convs C → C/``reduction``
    (with bias), v = 1×1 conv C → C (with bias), one softmax over the H + W − 1 row and column positions
    (self counted once), γ a scalar initialised to 0 (identity at init).  ``recurrence=2`` applies the same
    module twice (the RCCA head: full-image context in two steps).  Memory O(N·(H+W)); pure PyTorch (mmcv's
    op is CUDA only).  The q/k/v convs are stored as one fused 1×1 weight (``qkv_weight``: q rows, k rows, v
    rows).

    ``dims=3`` (RCCA-3D, Cao et al., Neurocomputing 2023): each position attends jointly to the D + H + W − 2
    positions of its depth, height and width lines, itself once (:func:`criss_cross_3d`); ``recurrence=3`` reaches
    the whole volume (line → plane → volume).  ``dims=1``: the one line is the whole signal, i.e. full attention
    over L (self once).

    Args:
        channels: C.
        reduction: q/k width C // reduction (official 8), at least 1.
        hidden_channels: explicit q/k width (overrides ``reduction``).
        recurrence: how many times the module is applied (1 = CCA, 2 = RCCA; 3 covers a volume).
        dims: spatial rank of the input (1, 2 or 3).

    Captured map: ``"attn"`` B×H×W×(H+W−1) (column weights without the self entry, then row weights; the last
    recurrence); B×1×L×L in 1-D; B×D×H×W×(D+H+W−2) in 3-D (depth, height without self, then width).  Differences from the official / community copies: see docs/provenance/criss_cross.md.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 8,
        hidden_channels: int | None = None,
        recurrence: int = 1,
        *,
        dims: int = 2,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels, self.dims = check_channels_rank(channels, dims, owner)
        positive_int(reduction, owner, "reduction")
        self.reduction, self.recurrence = reduction, positive_int(recurrence, owner, "recurrence")
        self.hidden_channels = hidden_width(channels, reduction, hidden_channels, 1, owner)
        c = self.hidden_channels
        # the official three 1×1 convs (query, key: C → C/8, value: C → C, all with bias) in one weight
        convs = [nn.Conv2d(channels, n, 1) for n in (c, c, channels)]
        self.qkv_weight = nn.Parameter(torch.cat([cv.weight.detach().flatten(1) for cv in convs]))
        self.qkv_bias = nn.Parameter(torch.cat([cast(torch.Tensor, cv.bias).detach() for cv in convs]))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        owner = capture_target(self)
        step = _STEP[self.dims]
        for _ in range(self.recurrence):
            x = step(x, self.qkv_weight, self.qkv_bias, self.gamma, self.hidden_channels, owner)
        return x

    def extra_repr(self) -> str:
        dims = "" if self.dims == 2 else f", dims={self.dims}"
        return f"{self.channels}, hidden_channels={self.hidden_channels}, recurrence={self.recurrence}{dims}"
