"""Visual Attention Network (Guo, Lu, Liu, Cheng, Hu; Computational Visual Media 2023) — Large Kernel Attention.

Paper: https://arxiv.org/abs/2202.09741 (official code: Visual-Attention-Network/VAN-Classification, Apache-2.0)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import Gate, positive_int
from ..registry import register

__all__ = ["LargeKernelAttention", "van_conv_init"]


@torch.no_grad()
def van_conv_init(module: nn.Module) -> None:
    """VAN's conv initialisation (also LSKA's): weight ~ N(0, √(2 / fan_out)) with
    fan_out = k_h·k_w·C_out / groups, bias 0 (``_init_weights`` of the official VAN code)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            m.weight.normal_(0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                m.bias.zero_()


@register(
    "lka",
    family="spatial",
    paper="Visual Attention Network (Guo et al.; Computational Visual Media 2023)",
    url="https://arxiv.org/abs/2202.09741",
    complexity="O(N)",
    summary="Large kernel attention: depthwise 5×5, depthwise 7×7 dilation 3, 1×1; x · attention (no sigmoid).",
    maps=("gate",),
)
class LargeKernelAttention(Gate):
    """Large Kernel Attention (VAN); B×C×H×W → B×C×H×W.

    ``A = Conv1×1(DW-D-Conv7×7,d=3(DW-Conv5×5(x)))``, ``y = x ⊙ A`` — a 21×21 receptive field (23×23 counting
    the kernels' full extent) decomposed into a depthwise conv, a dilated depthwise conv and a pointwise conv;
    no sigmoid (the paper's "attention" is the raw product).  All convs have biases, zero ("same") padding;
    VAN's init (:func:`van_conv_init`).  The copies' ``u = x.clone()`` is not needed and not done.

    Args:
        channels: input channels C.

    Captured map: ``"gate"`` B×C×H×W (the attention A).  See docs/provenance/lka.md.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        self.conv0 = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.conv_spatial = nn.Conv2d(channels, channels, 7, padding=9, dilation=3, groups=channels)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        van_conv_init(self)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention A, B×C×H×W."""
        a = self.conv_spatial(self.conv0(x))
        return F.conv2d(a, self.conv1.weight, self.conv1.bias)
