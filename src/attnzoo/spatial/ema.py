"""Efficient Multi-Scale Attention Module with Cross-Spatial Learning (Ouyang et al.; ICASSP 2023).

Paper: https://arxiv.org/abs/2305.13563
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..layers import (
    AttnModule,
    check_arg,
    check_nchw,
    inplace_ok,
    positive_int,
    softmax_fp32,
)
from ..registry import register

__all__ = ["EfficientMultiScaleAttention"]


@register(
    "ema",
    family="spatial",
    paper="Efficient Multi-Scale Attention Module with Cross-Spatial Learning (Ouyang et al.; ICASSP 2023)",
    url="https://arxiv.org/abs/2305.13563",
    complexity="O(N)",
    summary="Grouped 1×1 (directional pooling) and 3×3 branches whose pooled softmax descriptors cross-weight each other into a spatial gate.",
    maps=("gate",),
    test_kwargs={"factor": 4},
)
class EfficientMultiScaleAttention(AttnModule):
    """EMA; B×C×H×W → B×C×H×W.

    The channels are split into G = ``factor`` groups of C/G (folded into the batch).  Per group g:
    1×1 branch ``x1 = GN(g ⊙ σ(conv1x1(pool_h g)) ⊙ σ(conv1x1(pool_w g)))`` (GroupNorm with one channel per
    group), 3×3 branch ``x2 = conv3x3(g)``; cross-spatial weights
    ``a = softmax(GAP(x1))ᵀ x2 + softmax(GAP(x2))ᵀ x1`` (softmax over the C/G channels) and
    ``y = g ⊙ σ(a)``.  Official defaults (``factor=32``); weights are named as the official ``EMA`` so its
    state dicts load.  GAP(x1) is the GroupNorm bias exactly (a normalised channel has mean 0), so it is read
    from the bias; x1 itself is never built (its product with the softmax is folded into a matrix product with
    the normalised map's statistics).  See docs/provenance/ema.md.

    Args:
        channels: input channels C, divisible by ``factor``.
        factor: number of groups G (the official 32; the popular YOLO copies use 8).

    Captured map: ``"gate"`` B×G×H×W (each group's spatial gate σ(a)).
    """

    def __init__(self, channels: int, factor: int = 32) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        self.factor = positive_int(factor, self.owner, "factor")
        check_arg(channels % factor == 0, self.owner, "factor",
                  f"a divisor of channels={channels} (channels // factor ≥ 1 channels in each group)", factor)
        cg = channels // factor
        self.gn = nn.GroupNorm(cg, cg)
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, c, h, w = x.shape
        g, cg = self.factor, self.channels // self.factor
        gx = x.reshape(b * g, cg, h, w)
        # 1×1 branch: the shared 1×1 conv on [pool_h; pool_w] acts on each position alone, so it is applied to
        # the two pooled strips separately (the official concatenates and splits them again).
        wt, bias = self.conv1x1.weight[:, :, :, 0], self.conv1x1.bias
        a_h = torch.sigmoid(F.conv1d(gx.mean(3), wt, bias))  # (BG, cg, H)
        a_w = torch.sigmoid(F.conv1d(gx.mean(2), wt, bias))  # (BG, cg, W)
        z = gx * a_h[:, :, :, None]
        z = z.mul_(a_w[:, :, None, :]) if inplace_ok() else z * a_w[:, :, None, :]
        var, mu = torch.var_mean(z, dim=(2, 3), correction=0)  # GroupNorm statistics (one channel per group)
        rstd = torch.rsqrt(var + self.gn.eps)
        # 3×3 branch.
        x2 = self.conv3x3(gx)
        p1 = softmax_fp32(self.gn.bias, 0).to(x2.dtype)  # softmax(GAP(x1)) = softmax(GN bias), (cg,)
        p2 = softmax_fp32(x2.mean((2, 3)), 1)  # softmax(GAP(x2)), (BG, cg)
        # softmax(GAP(x2))ᵀ x1 = Σ_c p2_c (γ_c rstd_c (z_c − μ_c) + β_c) = aᵀ z + const.
        coef = p2 * self.gn.weight * rstd
        const = (p2 * (self.gn.bias - self.gn.weight * rstd * mu)).sum(1)
        zf = z.flatten(2)
        logits = torch.matmul(p1[None, None, :], x2.flatten(2)) + torch.matmul(coef[:, None, :].to(zf.dtype), zf)
        dt = self.gn.weight.dtype  # the parameters' precision (float32 under autocast)
        gate = torch.sigmoid(logits.to(dt) + const[:, None, None].to(dt)).to(x.dtype).view(b * g, 1, h, w)
        record(self, "gate", gate.view(b, g, h, w))
        return (gx * gate).view(b, c, h, w)
