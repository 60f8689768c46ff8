"""Bottleneck Transformers for Visual Recognition (BoTNet; Srinivas, Lin, Parmar, Shlens, Abbeel, Vaswani; CVPR 2021).

Paper: https://arxiv.org/abs/2101.11605 (no official PyTorch code: a reference gist; timm's ``BottleneckAttn``,
Apache-2.0, is the reference copy and the parity oracle, read, not copied).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..capture import capture_target
from ..functional.relative_logits import check_relative_input, init_relative_tables, relative_logit_mask
from ..layers import (
    TABLE_BOUND,
    AttnModule,
    SizeBound,
    attention,
    check_arg,
    check_choice,
    check_heads,
    check_nchw,
    positive_int,
)
from ..layers.checks import output_width
from ..registry import ShapeRule, register, strided

__all__ = ["BoTMHSA", "check_max_size", "relative_self_attention", "stride_pool"]


def check_max_size(max_size: object, owner: str) -> tuple[int, int]:
    """``max_size`` as a pair of positive ints (an int means a square)."""
    pair = (max_size, max_size) if isinstance(max_size, int) and not isinstance(max_size, bool) else max_size
    ok = (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)
    )
    check_arg(ok, owner, "max_size", "a positive int or a pair (H, W) of positive ints", max_size)
    return (int(pair[0]), int(pair[1]))  # type: ignore[index]


def stride_pool(out: torch.Tensor, stride: int) -> torch.Tensor:
    """BoTNet's and the lambda layer's output stride: ``stride=2`` average-pools 2×2 in ceil mode (an odd last
    row/column is averaged alone: any H×W ≥ 1); ``stride=1`` returns ``out``."""
    # count_include_pad=False: the same values in PyTorch (no padding), and ncnn then averages an odd last row alone
    return F.avg_pool2d(out, 2, 2, ceil_mode=True, count_include_pad=False) if stride == 2 else out


def relative_self_attention(
    qkv: torch.Tensor,
    widths: tuple[int, int, int],
    tables: tuple[torch.Tensor, torch.Tensor],
    scale: float,
    pos_scale: float,
    module: nn.Module | None,
) -> torch.Tensor:
    """Multi-head self-attention with 2-D relative logits on a B×(2·heads·d + heads·dv)×H×W map laid out
    ``[q (all heads) | k | v]``: ``softmax(scale·q·kᵀ + pos_scale·q·(R_h[Δy] + R_w[Δx])) v`` → B×(heads·dv)×H×W.
    ``widths`` = (heads, d, dv), ``tables`` = (R_h, R_w); the relative logits are SDPA's additive float mask."""
    heads, d, dv = widths
    b, _, h, w = qkv.shape
    q, k, v = qkv.flatten(2).split((heads * d, heads * d, heads * dv), 1)
    q, k = (t.reshape(b, heads, d, h * w).transpose(-1, -2) for t in (q, k))
    v = v.reshape(b, heads, dv, h * w).transpose(-1, -2)
    mask = relative_logit_mask(q, tables[0], tables[1], h, w, pos_scale)
    out = attention(q, k, v, mask=mask.to(q.dtype), scale=scale, module=module)
    return out.transpose(-1, -2).reshape(b, heads * dv, h, w)


@register(
    "bot_mhsa",
    family="self_attention",
    paper="Bottleneck Transformers for Visual Recognition (BoTNet; Srinivas et al.; CVPR 2021)",
    url="https://arxiv.org/abs/2101.11605",
    complexity="O(N^2)",
    summary="BoTNet MHSA: global multi-head self-attention with factorised 2-D relative position logits (R_h, R_w) "
    "for maps up to max_size (centre-sliced for smaller ones).",
    test_kwargs={"heads": 2, "max_size": (17, 17)},
    shape=ShapeRule("out_channels", strided("stride"), "C → `out_channels`, H×W → ⌈H/stride⌉×⌈W/stride⌉"),
    maps=("attn",),
)
class BoTMHSA(AttnModule):
    """BoTNet's multi-head self-attention with 2-D relative position logits; B×C×H×W → B×out×⌈H/s⌉×⌈W/s⌉.

    Per head, ``softmax(q·kᵀ / √d + q·(R_h[y' − y] + R_w[x' − x])) v`` over all positions (key minus query
    offsets), with q, k, v from one bias-free 1×1 conv laid out ``[q (all heads) | k | v]`` (timm's
    ``BottleneckAttn`` layout) and no output projection (BoTNet's next 1×1 conv does it).  The position
    logits are not scaled (timm, the reference gist), unless ``scale_pos_embed=True``.  ``stride=2`` average-pools
    the output 2×2 (BoTNet's first block of a stage).

    The tables ``height_rel`` ((2H − 1)×d) and ``width_rel`` ((2W − 1)×d) are built for ``max_size = (H, W)``;
    a smaller map uses their centre rows (its offsets), a larger one raises ``ValueError`` naming the limit (timm
    asserts that the input is exactly its ``feat_size``).  The relative logits are gathered from the tables
    (≤ 5 axes) and passed to SDPA as an additive float mask (exact: SDPA adds it to the scaled content logits);
    the mask is B×heads×N×N, computed in float32 under autocast.

    Args:
        channels: C.
        out_channels: output width (default C), divisible by ``heads``; v has ``out_channels / heads`` per head.
        heads: attention heads (BoTNet 4).
        dim_head: q/k width per head (default ``out_channels // heads``, as the paper; timm rounds
            ``out_channels`` up to a multiple of 8 first).
        max_size: (H, W) of the largest map (an int: square).
        stride: 1, or 2 to average-pool the output 2×2 (ceil mode: odd sizes keep their last row/column).
        qkv_bias: bias in the q/k/v conv.
        scale_pos_embed: scale the position logits by 1/√d too (timm's option; AA-conv's form).

    Captured map: ``"attn"`` B×heads×N×N.  See docs/provenance/bot_mhsa.md.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "max_size": SizeBound(TABLE_BOUND, "relative-logit table side"),
    }

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        heads: int = 4,
        dim_head: int | None = None,
        max_size: int | tuple[int, int] = (64, 64),
        stride: int = 1,
        qkv_bias: bool = False,
        scale_pos_embed: bool = False,
    ) -> None:
        super().__init__()
        owner = self.owner
        out = output_width(channels, out_channels, owner)
        check_heads(heads, out, owner, "out_channels", paren=True)
        dim_head = out // heads if dim_head is None else positive_int(dim_head, owner, "dim_head")
        check_arg(isinstance(qkv_bias, bool), owner, "qkv_bias", "a bool", qkv_bias)
        check_arg(isinstance(scale_pos_embed, bool), owner, "scale_pos_embed", "a bool", scale_pos_embed)
        self.channels, self.out_channels, self.heads, self.dim_head = channels, out_channels, heads, dim_head
        self.dim_head_v = out // heads
        self.max_size = check_max_size(max_size, owner)
        self.stride = check_choice(stride, (1, 2), owner, "stride")
        self.scale_pos_embed = scale_pos_embed
        self.scale = dim_head**-0.5
        self.qkv = nn.Conv2d(channels, 2 * heads * dim_head + out, 1, bias=qkv_bias)
        self.height_rel = nn.Parameter(torch.empty(2 * self.max_size[0] - 1, dim_head))
        self.width_rel = nn.Parameter(torch.empty(2 * self.max_size[1] - 1, dim_head))
        nn.init.trunc_normal_(self.qkv.weight, std=channels**-0.5)  # timm: fan-in std
        init_relative_tables(self.height_rel, self.width_rel, self.scale, trunc=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_relative_input(check_nchw(x, self.channels, self.owner), self.max_size, self.owner)
        pos_scale = self.scale if self.scale_pos_embed else 1.0
        widths = (self.heads, self.dim_head, self.dim_head_v)
        tables = (self.height_rel, self.width_rel)
        out = relative_self_attention(self.qkv(x), widths, tables, self.scale, pos_scale, capture_target(self))
        return stride_pool(out, self.stride)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, out_channels={self.out_channels}, heads={self.heads}, dim_head={self.dim_head}, "
            f"max_size={self.max_size}, stride={self.stride}"
        )
