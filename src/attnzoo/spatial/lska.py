"""Large Separable Kernel Attention: Rethinking the Large Kernel Attention Design in CNN (Lau, Po, Rehman;
Expert Systems with Applications 2024).

Paper: https://arxiv.org/abs/2309.01439 (official code: StevenLauHKHK/Large-Separable-Kernel-Attention, Apache-2.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import Gate, check_choice, positive_int
from ..registry import register
from .lka import van_conv_init

__all__ = ["LSKA_KERNELS", "LargeSeparableKernelAttention"]

#: The official table: effective kernel size k → (k0, kd, d): a k0-tap depthwise strip conv, then a kd-tap
#: depthwise strip conv with dilation d, each first horizontal (1×·) then vertical (·×1);
#: k = k0 + d·(kd − 1).
LSKA_KERNELS: dict[int, tuple[int, int, int]] = {
    7: (3, 3, 2),
    11: (3, 5, 2),
    23: (5, 7, 3),
    35: (5, 11, 3),
    41: (5, 13, 3),
    53: (5, 17, 3),
}


def _strip(channels: int, k: int, dilation: int, horizontal: bool) -> nn.Conv2d:
    pad = dilation * (k - 1) // 2
    return nn.Conv2d(
        channels,
        channels,
        (1, k) if horizontal else (k, 1),
        padding=(0, pad) if horizontal else (pad, 0),
        dilation=dilation,
        groups=channels,
    )


@register(
    "lska",
    family="spatial",
    paper="Large Separable Kernel Attention (Lau, Po, Rehman; Expert Systems with Applications 2024)",
    url="https://arxiv.org/abs/2309.01439",
    complexity="O(N)",
    summary="LKA with each depthwise conv split into 1×k and k×1 strips (plain, then dilated); 1×1; x · attention.",
    maps=("gate",),
    test_kwargs={"kernel_size": 7},
)
class LargeSeparableKernelAttention(Gate):
    """Large Separable Kernel Attention; B×C×H×W → B×C×H×W.

    ``A = Conv1×1(DW_{kd×1,d}(DW_{1×kd,d}(DW_{k0×1}(DW_{1×k0}(x)))))``, ``y = x ⊙ A`` (no sigmoid), where
    (k0, kd, d) comes from the official table :data:`LSKA_KERNELS` for the effective kernel ``kernel_size``
    ∈ {7, 11, 23, 35, 41, 53}; the two separable stages equal one dense depthwise k×k kernel (the outer
    product of the strips, the dilated one spread out and convolved with the plain one).  Biases on every
    conv, zero ("same") padding, VAN's init.

    Args:
        channels: input channels C.
        kernel_size: effective kernel size, one of 7, 11, 23, 35, 41, 53 (7 = the official default; the
            released ImageNet checkpoint uses 23).

    Captured map: ``"gate"`` B×C×H×W.  See docs/provenance/lska.md.
    """

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        sizes = "one of the paper's sizes " + ", ".join(map(str, LSKA_KERNELS))
        check_choice(kernel_size, tuple(LSKA_KERNELS), self.owner, "kernel_size", sizes)
        self.kernel_size = kernel_size
        k0, kd, d = LSKA_KERNELS[kernel_size]
        self.conv0h = _strip(channels, k0, 1, True)
        self.conv0v = _strip(channels, k0, 1, False)
        self.conv_spatial_h = _strip(channels, kd, d, True)
        self.conv_spatial_v = _strip(channels, kd, d, False)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        van_conv_init(self)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention A, B×C×H×W."""
        a = self.conv_spatial_v(self.conv_spatial_h(self.conv0v(self.conv0h(x))))
        return F.conv2d(a, self.conv1.weight, self.conv1.bias)
