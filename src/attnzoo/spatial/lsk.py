"""Large Selective Kernel Network for Remote Sensing Object Detection (Li, Hou, Zheng, Cheng, Yang, Li;
ICCV 2023) — the LSK selection block.

Paper: https://arxiv.org/abs/2303.09030

Written from the paper only.  The official code (zcablii/LSKNet) is licensed CC BY-NC 4.0 (non-commercial):
it was not read or copied for this file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import is_capturing, record
from ..layers import AttnModule, check_nchw, hidden_width, inplace_ok, max_over
from ..registry import register

__all__ = ["LargeSelectiveKernel"]


@register(
    "lsk",
    family="spatial",
    paper="Large Selective Kernel Network for Remote Sensing Object Detection (Li et al.; ICCV 2023)",
    url="https://arxiv.org/abs/2303.09030",
    complexity="O(N)",
    summary="Two chained depthwise large kernels, 1×1 reductions, spatial selection from [mean, max] → two sigmoid maps; x · attention.",
    maps=("selection", "gate"),
)
class LargeSelectiveKernel(AttnModule):
    """LSK selection block (LSKNet); B×C×H×W → B×C×H×W.

    From the paper's equations: ``U_1 = DW5×5(x)``, ``U_2 = DW7×7,d=3(U_1)`` (a chain: receptive fields 5 and
    23); ``Ũ_i = Conv1×1(U_i)`` with C → C/2 channels each; ``SA = σ(Conv7×7([mean_c(Ũ); max_c(Ũ)]))`` with
    Ũ = [Ũ_1; Ũ_2] and 2 → 2 channels, one map per kernel; ``S = Conv1×1(SA_1·Ũ_1 + SA_2·Ũ_2)`` back to C;
    ``y = x ⊙ S`` (no sigmoid on S, as the paper).  All convs with biases and PyTorch's default init (the paper
    gives none).  The channel mean/max of Ũ are taken from the two halves without concatenating them.

    Args:
        channels: input channels C.
        hidden_channels: width of each reduced branch (default C/2, at least 1).

    Captured maps: ``"selection"`` B×2×H×W (SA) and ``"gate"`` B×C×H×W (S).  Clean-room: see
    docs/provenance/lsk.md (the official code is CC BY-NC and was not read).
    """

    def __init__(self, channels: int, hidden_channels: int | None = None) -> None:
        super().__init__()
        hidden = hidden_width(channels, 2, hidden_channels, 1, self.owner)
        self.channels, self.hidden = channels, hidden
        self.conv0 = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.conv_spatial = nn.Conv2d(channels, channels, 7, padding=9, dilation=3, groups=channels)
        self.reduce1 = nn.Conv2d(channels, hidden, 1)
        self.reduce2 = nn.Conv2d(channels, hidden, 1)
        self.select = nn.Conv2d(2, 2, 7, padding=3)
        self.proj = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        u1 = self.conv0(x)
        u2 = self.conv_spatial(u1)
        u1 = F.conv2d(u1, self.reduce1.weight, self.reduce1.bias)
        u2 = F.conv2d(u2, self.reduce2.weight, self.reduce2.bias)
        mean = (u1.sum(1) + u2.sum(1)) * (0.5 / self.hidden)
        mx = torch.maximum(max_over(u1, 1), max_over(u2, 1))
        sa = torch.sigmoid(self.select(torch.stack([mean, mx], 1)))
        record(self, "selection", sa)
        attn = u1 * sa[:, :1] + u2 * sa[:, 1:]
        del u1, u2  # free the branches before the output projection
        s = F.conv2d(attn, self.proj.weight, self.proj.bias)
        record(self, "gate", s)
        return s.mul_(x) if inplace_ok() and not is_capturing(self) else x * s
