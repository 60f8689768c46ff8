"""Attention Augmented Convolutional Networks (Bello, Zoph, Vaswani, Shlens, Le; ICCV 2019).

Paper: https://arxiv.org/abs/1904.09925 (the paper's TensorFlow listing is the reference; no official PyTorch
code).  Written from the paper.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from ..capture import capture_target
from ..functional.relative_logits import check_relative_input, init_relative_tables
from ..layers import (
    KERNEL_BOUND,
    TABLE_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_nchw,
    non_negative_int,
    odd_kernel,
    positive_int,
)
from ..layers.checks import output_width
from ..registry import OUT_CHANNELS, register
from .bot_mhsa import check_max_size, relative_self_attention

__all__ = ["AAConv"]

#: The paper's widths as fractions of the output channels: κ = 2υ = 0.2 (d_k = κ·F_out, d_v = υ·F_out).
KAPPA, UPSILON = 0.2, 0.1


def _paper_width(fraction: float, out: int, heads: int) -> int:
    """``fraction · out`` rounded to a multiple of ``heads`` (at least one channel per head)."""
    return heads * max(1, round(fraction * out / heads))


@register(
    "aa_conv",
    family="self_attention",
    paper="Attention Augmented Convolutional Networks (Bello, Zoph, Vaswani, Shlens, Le; ICCV 2019)",
    url="https://arxiv.org/abs/1904.09925",
    complexity="O(N^2)",
    summary="Attention-augmented conv: concat(conv (out − d_v channels), 1×1(multi-head self-attention with 2-D "
    "relative logits) (d_v channels)).",
    test_kwargs={"heads": 2, "max_size": (17, 17)},
    shape=OUT_CHANNELS,
    maps=("attn",),
)
class AAConv(AttnModule):
    """Attention-augmented convolution; B×C×H×W → B×out×H×W.

    ``out = concat(Conv_k(x), W_O · MHA(x))``: a k×k "same" convolution to ``out − d_v`` channels and
    ``value_channels`` d_v channels of multi-head self-attention over all positions, its heads merged and mixed
    by a 1×1 conv.  Per head (d_k/N_h = d), ``softmax((q·kᵀ + q·R_h[y' − y] + q·R_w[x' − x]) / √d) v`` with
    q, k, v from one 1×1 conv laid out ``[q (all heads) | k | v]``: the relative terms are scaled too (the paper's
    listing scales q before both), and the tables ``R_h``, ``R_w`` (d columns, shared by the heads, N(0, d^-1)
    init) are built for ``max_size`` as BoTNet's (:class:`attnzoo.self_attention.BoTMHSA`): centre-sliced
    for smaller maps, ``ValueError`` naming the limit for larger ones.  Non-square maps work (the common PyTorch
    copy needs H = W).  ``value_channels=0`` is the plain convolution (no attention parameters).

    The relative logits reach SDPA as an additive float mask (exact), B×heads×N×N, computed in float32 under
    autocast.

    Args:
        channels: C.
        out_channels: F_out (default C).
        kernel_size: k of the convolution (odd).
        heads: N_h (paper 8).
        key_channels: d_k, total over the heads (default κ·F_out with κ = 0.2, rounded to a multiple of heads).
        value_channels: d_v, total over the heads (default υ·F_out with υ = 0.1, rounded to a multiple of
            heads); at most F_out (F_out: attention only, no convolution); 0: a plain convolution.
        max_size: (H, W) of the largest map (an int: square).
        bias: bias in the convolution.

    Captured map: ``"attn"`` B×heads×N×N.  See docs/provenance/aa_conv.md.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
        "max_size": SizeBound(TABLE_BOUND, "relative-logit table side"),
    }

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        kernel_size: int = 3,
        heads: int = 8,
        key_channels: int | None = None,
        value_channels: int | None = None,
        max_size: int | tuple[int, int] = (64, 64),
        bias: bool = True,
    ) -> None:
        super().__init__()
        owner = self.owner
        out = output_width(channels, out_channels, owner)
        odd_kernel(kernel_size, owner)
        positive_int(heads, owner, "heads")
        check_arg(isinstance(bias, bool), owner, "bias", "a bool", bias)
        dv = _paper_width(UPSILON, out, heads) if value_channels is None else value_channels
        non_negative_int(dv, owner, "value_channels")
        check_arg(dv <= out, owner, "value_channels", f"at most out_channels ({out})", dv)
        dk = _paper_width(KAPPA, out, heads) if key_channels is None else key_channels
        positive_int(dk, owner, "key_channels")
        for what, width in (("key_channels", dk), ("value_channels", dv)):
            check_arg(width % heads == 0, owner, what, f"a multiple of heads ({heads})", width)
        self.channels, self.out_channels, self.kernel_size, self.heads = channels, out_channels, kernel_size, heads
        self.key_channels, self.value_channels = dk, dv
        self.max_size = check_max_size(max_size, owner)
        self.dim_head = dk // heads
        self.scale = self.dim_head**-0.5
        self.conv = (
            nn.Conv2d(channels, out - dv, kernel_size, padding=kernel_size // 2, bias=bias) if dv < out else None
        )
        self.qkv: nn.Conv2d | None = None
        self.proj: nn.Conv2d | None = None
        if dv > 0:
            self.qkv = nn.Conv2d(channels, 2 * dk + dv, 1)
            self.proj = nn.Conv2d(dv, dv, 1)
            self.height_rel = nn.Parameter(torch.empty(2 * self.max_size[0] - 1, self.dim_head))
            self.width_rel = nn.Parameter(torch.empty(2 * self.max_size[1] - 1, self.dim_head))
            init_relative_tables(self.height_rel, self.width_rel, self.scale, trunc=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        if self.qkv is None or self.proj is None:
            assert self.conv is not None
            return self.conv(x)
        x = check_relative_input(x, self.max_size, self.owner)
        widths = (self.heads, self.dim_head, self.value_channels // self.heads)
        tables = (self.height_rel, self.width_rel)
        # the paper scales q before both terms: the relative logits are scaled too
        att = relative_self_attention(self.qkv(x), widths, tables, self.scale, self.scale, capture_target(self))
        att = self.proj(att)
        return att if self.conv is None else torch.cat([self.conv(x), att], 1)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, heads={self.heads}, "
            f"key_channels={self.key_channels}, value_channels={self.value_channels}, max_size={self.max_size}"
        )
