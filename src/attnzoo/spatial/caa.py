"""Poly Kernel Inception Network for Remote Sensing Detection (Cai, Lai, Wang, Wang, Sun, Yao; CVPR 2024) —
Context Anchor Attention (CAA).

Paper: https://arxiv.org/abs/2403.06258 (official code: NUST-Machine-Intelligence-Laboratory/PKINet, Apache-2.0)
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import KERNEL_BOUND, Gate, SizeBound, check_bn_values, check_choice, inplace_ok, odd_kernel, positive_int
from ..registry import register

__all__ = ["ContextAnchorAttention"]

_VARIANTS = ("paper", "bn_silu")


@register(
    "caa",
    family="spatial",
    paper="Poly Kernel Inception Network for Remote Sensing Detection (Cai et al.; CVPR 2024)",
    url="https://arxiv.org/abs/2403.06258",
    complexity="O(N)",
    summary="Context anchor attention: 7×7 avg pool, 1×1, depthwise 1×k and k×1 strips, 1×1, sigmoid; x · attention.",
    maps=("gate",),
)
class ContextAnchorAttention(Gate):
    """Context Anchor Attention (PKINet); B×C×H×W → B×C×H×W.

    ``P = Conv1×1(AvgPool7×7(x))``, ``A = σ(Conv1×1(DW_{k×1}(DW_{1×k}(P))))``, ``y = x ⊙ A``.  The average pool
    has stride 1, padding 3 and counts the zero padding (``count_include_pad=True``, PyTorch's default, as the
    official ``nn.AvgPool2d(7, 1, 3)``).  The strip convs are depthwise with biases.

    ``variant="paper"`` (default): the 1×1 convs are plain convs with biases — the paper's equations and how
    PKINet itself builds CAA (``CAA(..., norm_cfg=None, act_cfg=None)`` inside every Inception bottleneck).
    ``variant="bn_silu"``: the official class's own defaults, which the copies keep — each 1×1 conv without bias,
    then BatchNorm (momentum 0.03, eps 1e-3) and SiLU (train mode needs B·H·W > 1).

    Args:
        channels: input channels C.
        kernel_size: odd strip length k (11 in PKINet's first block; its stages grow it by 2 per block).
        variant: ``"paper"`` or ``"bn_silu"``.

    Captured map: ``"gate"`` B×C×H×W.  See docs/provenance/caa.md.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(self, channels: int, kernel_size: int = 11, variant: str = "paper") -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        self.kernel_size = odd_kernel(kernel_size, self.owner)
        self.variant = check_choice(variant, _VARIANTS, self.owner, "variant")
        norm = variant == "bn_silu"
        k = kernel_size
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=not norm)
        self.h_conv = nn.Conv2d(channels, channels, (1, k), padding=(0, k // 2), groups=channels)
        self.v_conv = nn.Conv2d(channels, channels, (k, 1), padding=(k // 2, 0), groups=channels)
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=not norm)
        if norm:
            self.bn1 = nn.BatchNorm2d(channels, eps=1e-3, momentum=0.03)
            self.bn2 = nn.BatchNorm2d(channels, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU() if norm else None

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention A, B×C×H×W."""
        if self.act is not None:
            x = check_bn_values(x, self.training, self.owner)
        # One name for the running map, reassigned at every step: each full-size intermediate is freed as soon
        # as the next one exists (a name held across several layers keeps one more map alive at the peak).
        a = self.conv1(F.avg_pool2d(x, 7, 1, 3))
        if self.act is not None:
            a = self.act(self.bn1(a))
        a = self.h_conv(a)
        a = self.v_conv(a)
        a = self.conv2(a)
        if self.act is not None:
            a = self.act(self.bn2(a))
        return a.sigmoid_() if inplace_ok() else torch.sigmoid(a)  # a: this module's own buffer
