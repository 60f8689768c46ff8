"""Coordinate Attention (Hou, Zhou, Feng; CVPR 2021).  Paper: https://arxiv.org/abs/2103.02907"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..capture import record
from ..layers import AttnModule, HardSwish, check_nchw, hidden_width, inplace_ok
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register

__all__ = ["CoordinateAttention"]


@register(
    "coord",
    family="channel",
    paper="Coordinate Attention for Efficient Mobile Network Design (Hou, Zhou, Feng; CVPR 2021)",
    url="https://arxiv.org/abs/2103.02907",
    complexity="O(N)",
    summary="Direction-aware pooling along H and W → shared 1×1 conv → two sigmoid gates a_h ⊙ a_w.",
    maps=("gate_h", "gate_w"),
)
class CoordinateAttention(AttnModule):
    """Coordinate Attention; B×C×H×W → B×C×H×W.

    ``x_h = mean over W`` (B×C×H×1), ``x_w = mean over H`` (B×C×1×W); concatenated along the spatial axis
    through a 1×1 conv C → mip (bias) + BN + h_swish, split back, ``a_h = σ(conv_h)``, ``a_w = σ(conv_w)``
    (1×1 convs with bias), ``y = x ⊙ a_h ⊙ a_w``.  ``mip = max(min_hidden, C // reduction)`` with the official
    reduction 32 and floor 8 (the official ``coordatt.py``).  Output channels always equal input channels.

    Args:
        channels: input channels C.
        reduction: r in mip = max(min_hidden, C // r).
        min_hidden: floor of mip (8 in the official code).

    Captured maps: ``"gate_h"`` B×C×H×1 and ``"gate_w"`` B×C×1×W.
    """

    def __init__(self, channels: int, reduction: float = 32, min_hidden: int = 8) -> None:
        super().__init__()
        mip = hidden_width(channels, reduction, None, min_hidden, self.owner, cap_floor=False)
        self.channels, self.reduction = channels, reduction
        self.conv1 = nn.Conv2d(channels, mip, 1, bias=True)
        self.bn1 = PooledBatchNorm2d(mip)
        self.act = HardSwish()
        self.conv_h = nn.Conv2d(mip, channels, 1, bias=True)
        self.conv_w = nn.Conv2d(mip, channels, 1, bias=True)

    def gate_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two gates: a_h (B×C×H×1) and a_w (B×C×1×W)."""
        h, w = x.shape[2], x.shape[3]
        x_h = x.mean(3, keepdim=True)  # B, C, H, 1
        x_w = x.mean(2, keepdim=True).transpose(2, 3)  # B, C, W, 1
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        return torch.sigmoid(self.conv_h(y_h)), torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        a_h, a_w = self.gate_maps(x)
        record(self, "gate_h", a_h)
        record(self, "gate_w", a_w)
        out = x * a_w
        # Without autograd the product (this module's own buffer) takes the second gate in place.
        return out.mul_(a_h) if inplace_ok() else out * a_h
