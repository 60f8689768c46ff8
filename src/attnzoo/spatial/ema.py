"""Efficient Multi-Scale Attention Module with Cross-Spatial Learning (Ouyang et al.; ICASSP 2023).

Paper: https://arxiv.org/abs/2305.13563
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .. import tracing
from ..capture import record
from ..functional.gating import axis_gates
from ..layers import (
    AttnModule,
    check_arg,
    check_nchw,
    positive_int,
    softmax_fp32,
)
from ..registry import register

__all__ = ["EfficientMultiScaleAttention"]


def _tap_sums(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """For a 3×3 conv with zero padding 1 on x (N×C×H×W): the sum of x over the input positions each tap (i, j)
    reads across all output positions, N×C×3×3 (so that GAP(conv(x)) = Σ W·sums / (H·W) + b).

    Tap row 0 never reads the last row, tap row 2 never the first (columns alike): the total minus the
    excluded row and column sums plus the excluded corner (exact also for H or W = 1, where both are empty).
    ``rows``/``cols``: x summed over W / over H."""
    total = rows.sum(2)[:, :, None, None]
    zero = torch.zeros_like(rows[:, :, 0])
    row_out = torch.stack([rows[:, :, -1], zero, rows[:, :, 0]], 2)[:, :, :, None]
    col_out = torch.stack([cols[:, :, -1], zero, cols[:, :, 0]], 2)[:, :, None, :]
    corner = torch.stack(
        [
            torch.stack([x[:, :, -1, -1], zero, x[:, :, -1, 0]], 2),
            torch.stack([zero, zero, zero], 2),
            torch.stack([x[:, :, 0, -1], zero, x[:, :, 0, 0]], 2),
        ],
        2,
    )
    return total - row_out - col_out + corner


_GROUPED_FORM = tracing.PortableForm(
    targets=("ncnn",),
    marker="aten::repeat",
    reason="ncnn has no batch axis: the eager form's groups folded into the batch (B·G×C/G×H×W) convert to a graph "
    "that mixes the groups",
    cases=({}, {"factor": 8}, {"factor": 1}, {"factor": 16}),
)


@register(
    "ema",
    family="spatial",
    paper="Efficient Multi-Scale Attention Module with Cross-Spatial Learning (Ouyang et al.; ICASSP 2023)",
    url="https://arxiv.org/abs/2305.13563",
    complexity="O(N)",
    summary="Grouped 1×1 (directional pooling) and 3×3 branches whose pooled softmax descriptors cross-weight each other into a spatial gate.",
    maps=("gate",),
    test_kwargs={"factor": 4},
    forms=(_GROUPED_FORM,),
)
class EfficientMultiScaleAttention(AttnModule):
    """EMA; B×C×H×W → B×C×H×W.

    The channels are split into G = ``factor`` groups of C/G (folded into the batch).  Per group g:
    1×1 branch ``x1 = GN(g ⊙ σ(conv1x1(pool_h g)) ⊙ σ(conv1x1(pool_w g)))`` (GroupNorm with one channel per
    group), 3×3 branch ``x2 = conv3x3(g)``; cross-spatial weights
    ``a = softmax(GAP(x1))ᵀ x2 + softmax(GAP(x2))ᵀ x1`` (softmax over the C/G channels) and
    ``y = g ⊙ σ(a)``.  x2 enters only through these two products, so it is never built: a one-output-channel
    conv with the softmax-combined kernel, and GAP(x2) from border sums (same values, 1/(C/G) of the 3×3 conv).  Official defaults (``factor=32``); weights are named as the official ``EMA`` so its
    state dicts load.  GAP(x1) is the GroupNorm bias exactly (a normalised channel has mean 0), so it is read
    from the bias.  See docs/provenance/ema.md.

    Args:
        channels: input channels C, divisible by ``factor``.
        factor: number of groups G (the official 32; the popular YOLO copies use 8).

    Captured map: ``"gate"`` B×G×H×W (each group's spatial gate σ(a)).
    """

    def __init__(self, channels: int, factor: int = 32) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        self.factor = positive_int(factor, self.owner, "factor")
        check_arg(
            channels % factor == 0,
            self.owner,
            "factor",
            f"a divisor of channels={channels} (channels // factor ≥ 1 channels in each group)",
            factor,
        )
        cg = channels // factor
        self.gn = nn.GroupNorm(cg, cg)
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        if tracing.portable(*_GROUPED_FORM.targets):
            return self._forward_portable(x)
        b, c, h, w = x.shape
        g, cg = self.factor, self.channels // self.factor
        gx = x.reshape(b * g, cg, h, w)
        # 1×1 branch: the shared 1×1 conv on [pool_h; pool_w] acts on each position alone, so it is applied to
        # the two pooled strips separately (the official concatenates and splits them again).
        w1, b1 = self.conv1x1.weight[:, :, 0, 0], cast(torch.Tensor, self.conv1x1.bias)[:, None]
        rows, cols = gx.sum(3), gx.sum(2)  # (BG, cg, H), (BG, cg, W)
        a_h = torch.sigmoid(torch.matmul(w1, rows / w) + b1)
        a_w = torch.sigmoid(torch.matmul(w1, cols / h) + b1)
        z = axis_gates(gx, a_h[:, :, :, None], a_w[:, :, None, :])  # lean backward: keeps no gx ⊙ a_h
        x1 = torch.group_norm(z, cg, self.gn.weight, self.gn.bias, self.gn.eps)  # self.gn, one channel per group
        del z  # full-size temporaries go as soon as they are used (the peak of an inference call)
        # 3×3 branch x2 = conv3x3(g), needed only through softmax(GAP(x1))ᵀ x2 and GAP(x2):
        # softmax(GAP(x1)) = softmax(GN bias) =: p1 is the same for every sample, so p1ᵀ x2 is one conv with the
        # p1-combined kernel (1 output channel), and GAP(x2) is the kernel applied to the sums of g over the
        # rows/columns each tap sees (zero padding), so the C/G-channel x2 is never built.
        w3, b3 = self.conv3x3.weight, cast(torch.Tensor, self.conv3x3.bias)
        p1 = softmax_fp32(self.gn.bias, 0).to(w3.dtype)  # (cg,)
        wsum = torch.matmul(p1, w3.flatten(1)).view(1, cg, 3, 3)
        mean2 = torch.matmul(_tap_sums(gx, rows, cols).flatten(1), w3.flatten(1).t()) / (h * w) + b3  # (BG, cg)
        p2 = softmax_fp32(mean2, 1)  # softmax(GAP(x2))
        logits = F.conv2d(gx, wsum, (p1 * b3).sum().view(1), padding=1).flatten(2)
        logits = logits + torch.matmul(p2[:, None, :].to(x1.dtype), x1.flatten(2))
        del x1
        gate = torch.sigmoid(logits.to(self.gn.weight.dtype)).to(x.dtype).view(b * g, 1, h, w)
        record(self, "gate", gate.view(b, g, h, w))
        return (gx * gate).view(b, c, h, w)

    def _forward_portable(self, x: torch.Tensor) -> torch.Tensor:
        """The same values with the G groups kept on their own axis (the portable form, docs/exports.md).

        ncnn has no batch axis: the eager form's groups folded into the batch (B·G×C/G×H×W) convert to a graph
        that silently mixes the groups.  Here the 1×1 and the combined 3×3 conv are grouped convolutions on
        B×C×… maps and the group products are batched over a G axis.  (Slower in eager PyTorch: the grouped 1×1
        conv on H×1 strips falls back to a per-group loop.)"""
        b, c, h, w = x.shape
        g, cg = self.factor, self.channels // self.factor
        w1, b1 = self.conv1x1.weight.repeat(g, 1, 1, 1), cast(torch.Tensor, self.conv1x1.bias).repeat(g)
        rows, cols = x.sum(3, keepdim=True), x.sum(2, keepdim=True)  # (B, C, H, 1), (B, C, 1, W)
        a_h = torch.sigmoid(F.conv2d(rows / w, w1, b1, groups=g))
        a_w = torch.sigmoid(F.conv2d(cols / h, w1, b1, groups=g))
        x1 = torch.group_norm(
            x * a_h * a_w, self.channels, self.gn.weight.repeat(g), self.gn.bias.repeat(g), self.gn.eps
        )
        w3, b3 = self.conv3x3.weight, cast(torch.Tensor, self.conv3x3.bias)
        p1 = softmax_fp32(self.gn.bias, 0).to(w3.dtype)  # (cg,)
        wsum = torch.matmul(p1, w3.flatten(1)).view(1, cg, 3, 3).repeat(g, 1, 1, 1)
        taps = _tap_sums(x, rows.squeeze(3), cols.squeeze(2)).reshape(b, g, cg * 9)
        mean2 = torch.matmul(taps, w3.flatten(1).t()) / (h * w) + b3  # (B, G, cg)
        p2 = softmax_fp32(mean2, 2)  # softmax(GAP(x2))
        logits = F.conv2d(x, wsum, (p1 * b3).sum().repeat(g), padding=1, groups=g).view(b, g, 1, h * w)
        logits = logits + torch.matmul(p2[:, :, None, :].to(x1.dtype), x1.view(b, g, cg, h * w))
        gate = torch.sigmoid(logits.to(self.gn.weight.dtype)).to(x.dtype).view(b, g, 1, h, w)
        record(self, "gate", gate.view(b, g, h, w))
        return (x.view(b, g, cg, h, w) * gate).view(b, c, h, w)
