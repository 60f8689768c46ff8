"""Rotate to Attend: Convolutional Triplet Attention Module (Misra et al.; WACV 2021).

Paper: https://arxiv.org/abs/2010.03045
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..capture import is_capturing, record
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    ZPoolGate,
    check_nchw,
    inplace_ok,
    positive_int,
    renamed_args,
    z_pool,
)
from ..registry import register

__all__ = ["TripletAttention"]


@register(
    "triplet",
    family="spatial",
    paper="Rotate to Attend: Convolutional Triplet Attention Module (Misra et al.; WACV 2021)",
    url="https://arxiv.org/abs/2010.03045",
    complexity="O(N)",
    summary="Three Z-pool gates over the (C,W), (H,C) and (H,W) planes, averaged.",
    maps=("gate",),
)
class TripletAttention(AttnModule):
    """Triplet Attention; B×C×H×W → B×C×H×W.

    Three gates, each ``σ(BN(Conv_k×k([max; mean])))``: over the (C, W) plane pooling H, over the (H, C)
    plane pooling W, and over (H, W) pooling C; ``y = x ⊙ (g_cw + g_hc + g_hw) / 3`` (``/2`` of the two
    cross-dimension gates with ``spatial=False``).  The official code permutes x and makes contiguous copies
    for each branch; here each branch pools x along its axis directly (same values, no copy of x).  As the
    official ResNet builder, the H–W gate's BN weight starts at 0 (``zero_init``).

    Args:
        channels: input channels C (checked, not used by the weights).
        kernel_size: odd conv kernel size (7 official, 3 also reported).
        spatial: keep the H–W gate (formerly ``no_spatial``).
        zero_init: zero the H–W gate's BN weight.

    Captured map: ``"gate"`` broadcastable to B×C×H×W.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    @renamed_args(no_spatial=("spatial", lambda v: not v))
    def __init__(self, channels: int, kernel_size: int = 7, spatial: bool = True, zero_init: bool = True) -> None:
        super().__init__()
        positive_int(channels, self.owner, "channels")
        self.channels, self.kernel_size, self.spatial = channels, kernel_size, bool(spatial)
        self.cw = ZPoolGate(kernel_size, False, self.owner)
        self.hc = ZPoolGate(kernel_size, False, self.owner)
        self.hw = ZPoolGate(kernel_size, zero_init, self.owner) if spatial else None

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The averaged gate, broadcastable to B×C×H×W."""
        g_cw = self.cw(z_pool(x, 2)).squeeze(1).unsqueeze(2)  # pooled over H: plane (C, W) -> B, C, 1, W
        g_hc = (
            self.hc(z_pool(x, 3).transpose(2, 3)).squeeze(1).transpose(1, 2).unsqueeze(3)
        )  # plane (H, C) -> B, C, H, 1
        # Scale the small per-branch gates, then one broadcast sum into a single full-size buffer.
        if self.hw is None:
            return g_cw * 0.5 + g_hc * 0.5
        g_hw = self.hw(z_pool(x, 1))  # B, 1, H, W
        return (g_cw * (1.0 / 3.0) + g_hc * (1.0 / 3.0)).add_(g_hw * (1.0 / 3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        gate = self.gate_map(x)
        record(self, "gate", gate)
        # Without autograd the gate buffer (this module's own, unless a capture holds it) takes the product in place.
        return gate.mul_(x) if inplace_ok() and not is_capturing(self) else x * gate
