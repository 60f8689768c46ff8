"""Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks (Li, Hu, Yang; 2019).

Paper: https://arxiv.org/abs/1905.09646
"""

from __future__ import annotations

import torch
from torch import nn

from ..capture import record
from ..layers import AttnModule, check_arg, check_nchw, group_norm_groups, positive_int, spread_count
from ..registry import register

__all__ = ["SpatialGroupEnhance"]


@register(
    "sge",
    family="spatial",
    paper="Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks (Li, Hu, Yang; 2019)",
    url="https://arxiv.org/abs/1905.09646",
    complexity="O(N)",
    summary="Per group: similarity of each position to the group's mean feature, normalised over space, scaled, sigmoid gate.",
    maps=("gate",),
)
class SpatialGroupEnhance(AttnModule):
    """Spatial Group-wise Enhance; B×C×H×W → B×C×H×W.

    C is split into G groups of C/G; per group ``c_i = g · x_i`` with g = GAP(x) of the group (a dot product over
    its channels), ``ĉ = (c − mean c) / (std c + 1e-5)`` over the H·W positions (unbiased std as the official
    code; 0 on a 1×1 map, where the official divides 0 by NaN), ``a = σ(w·ĉ + b)`` and ``y = x ⊙ a``.  Official
    init ``w = 0``, ``b = 1`` (so the gate starts at σ(1) everywhere); parameters named as the official.  The
    group similarity is one batched matrix product.  See docs/provenance/sge.md.

    Args:
        channels: input channels C.
        groups: G, a divisor of C; ``None`` → the official 64 when it divides C, else the largest divisor ≤ 64.

    Captured map: ``"gate"`` B×G×H×W.
    """

    def __init__(self, channels: int, groups: int | None = None) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        if groups is None:
            groups = group_norm_groups(channels, 64)
        positive_int(groups, self.owner, "groups")
        check_arg(channels % groups == 0, self.owner, "groups", f"a divisor of channels={channels}", groups)
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, c, h, w = x.shape
        g = self.groups
        xg = x.reshape(b, g, c // g, h * w)
        sim = torch.matmul(xg.mean(3, keepdim=True).transpose(2, 3), xg).squeeze(2)  # (B, G, HW)
        t = sim.to(self.weight.dtype)  # the parameters' precision (float32 under autocast: sums of squares)
        t = t - t.mean(2, keepdim=True)
        var = t.square().sum(2, keepdim=True) / spread_count(t, (2,))
        # √ has an infinite slope at 0 (a 1×1 or constant map): clamping at 1e-30 keeps backward finite and is exact
        # wherever the spread is not (numerically) zero
        std = torch.sqrt(var.clamp(min=1e-30)) + 1e-5
        t = t / std * self.weight.view(1, g, 1) + self.bias.view(1, g, 1)
        gate = torch.sigmoid(t).to(x.dtype).view(b, g, 1, h * w)
        record(self, "gate", gate.view(b, g, h, w))
        return (xg * gate).view(b, c, h, w)
