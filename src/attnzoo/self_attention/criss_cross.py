"""CCNet: Criss-Cross Attention for Semantic Segmentation (Huang, Wang, Huang, Huang, Wei, Liu; ICCV 2019 / TPAMI 2020).

Paper: https://arxiv.org/abs/1811.11721 — official code: https://github.com/speedinghzl/CCNet (``cc_attention``).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ..capture import capture_target, record
from ..layers import AttnModule, check_nchw, fx_leaf, hidden_width, positive_int
from ..registry import register

__all__ = ["CrissCrossAttention", "criss_cross"]


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


@register(
    "criss_cross",
    family="self_attention",
    paper="CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al.; ICCV 2019)",
    url="https://arxiv.org/abs/1811.11721",
    complexity="O(N·(H+W))",
    summary="Each position attends to the H+W−1 positions of its row and column (one softmax); γ=0 residual; recurrence 2 = RCCA.",
    identity_at_init=True,
    maps=("attn",),
)
class CrissCrossAttention(AttnModule):
    """Criss-cross attention (CCNet CCA); B×C×H×W → B×C×H×W.

    ``y = x + γ · Σ_{u ∈ row(p) ∪ col(p)} softmax_u(q_p · k_u) v_u`` with q, k = 1×1 convs C → C/``reduction``
    (with bias), v = 1×1 conv C → C (with bias), one softmax over the H + W − 1 row and column positions
    (self counted once), γ a scalar initialised to 0 (identity at init).  ``recurrence=2`` applies the same
    module twice (the RCCA head: full-image context in two steps).  Memory O(N·(H+W)); pure PyTorch (mmcv's
    op is CUDA only).  The q/k/v convs are stored as one fused 1×1 weight (``qkv_weight``: q rows, k rows, v
    rows).

    Args:
        channels: C.
        reduction: q/k width C // reduction (official 8), at least 1.
        hidden_channels: explicit q/k width (overrides ``reduction``).
        recurrence: how many times the module is applied (1 = CCA, 2 = RCCA).

    Captured map: ``"attn"`` B×H×W×(H+W−1) (column weights without the self entry, then row weights; the last
    recurrence).  Differences from the official / community copies: see docs/provenance/criss_cross.md.
    """

    def __init__(
        self, channels: int, reduction: int = 8, hidden_channels: int | None = None, recurrence: int = 1
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        positive_int(reduction, owner, "reduction")
        self.channels, self.reduction, self.recurrence = (
            channels,
            reduction,
            positive_int(recurrence, owner, "recurrence"),
        )
        self.hidden_channels = hidden_width(channels, reduction, hidden_channels, 1, owner)
        c = self.hidden_channels
        # the official three 1×1 convs (query, key: C → C/8, value: C → C, all with bias) in one weight
        convs = [nn.Conv2d(channels, n, 1) for n in (c, c, channels)]
        self.qkv_weight = nn.Parameter(torch.cat([cv.weight.detach().flatten(1) for cv in convs]))
        self.qkv_bias = nn.Parameter(torch.cat([cast(torch.Tensor, cv.bias).detach() for cv in convs]))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        owner = capture_target(self)
        for _ in range(self.recurrence):
            x = _cca(x, self.qkv_weight, self.qkv_bias, self.gamma, self.hidden_channels, owner)
        return x

    def extra_repr(self) -> str:
        return f"{self.channels}, hidden_channels={self.hidden_channels}, recurrence={self.recurrence}"
