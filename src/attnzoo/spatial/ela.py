"""ELA: Efficient Local Attention for Deep Convolutional Neural Networks (Xu, Wan; arXiv 2024).

Paper: https://arxiv.org/abs/2403.01123 (no official code)
"""

from __future__ import annotations

import torch
from torch import nn

from ..capture import record
from ..functional.gating import axis_gates, axis_mean
from ..layers import (
    AttnModule,
    check_arg,
    check_choice,
    check_nchw,
    positive_int,
)
from ..registry import register

__all__ = ["ELA_VARIANTS", "EfficientLocalAttention"]

#: The paper's presets: variant → (kernel size, conv groups as a function of C, GroupNorm groups).
#: T and B are depthwise (groups = C); S and L use groups = C / 8.
ELA_VARIANTS: dict[str, tuple[int, str, int]] = {
    "T": (5, "C", 32),
    "B": (7, "C", 16),
    "S": (5, "C/8", 16),
    "L": (7, "C/8", 16),
}


@register(
    "ela",
    family="spatial",
    paper="ELA: Efficient Local Attention for Deep Convolutional Neural Networks (Xu, Wan; arXiv 2024)",
    url="https://arxiv.org/abs/2403.01123",
    complexity="O(N)",
    summary="Strip pooling along H and W, shared 1-D conv + GroupNorm + sigmoid per axis; x · a_h ⊗ a_w.",
    maps=("height", "width"),
)
class EfficientLocalAttention(AttnModule):
    """Efficient Local Attention; B×C×H×W → B×C×H×W.

    ``z_h = mean_W(x)`` (B×C×H), ``z_w = mean_H(x)`` (B×C×W); ``a_h = σ(GN(Conv1d(z_h)))``,
    ``a_w = σ(GN(Conv1d(z_w)))`` with one Conv1d (no bias, zero padding) and one GroupNorm shared by both axes,
    each axis normalised on its own; ``y = x ⊙ a_h ⊗ a_w``.  No channel reduction, no residual.

    ``variant`` picks the paper's preset (kernel, conv groups, GroupNorm groups): ``"T"`` (5, C, 32),
    ``"B"`` (7, C, 16, the default and the paper's listing), ``"S"`` (5, C/8, 16), ``"L"`` (7, C/8, 16).
    Channels must be divisible by the GroupNorm groups (and by 8 for S/L); otherwise ``ValueError``.

    Args:
        channels: input channels C.
        variant: ``"T"``, ``"B"``, ``"S"`` or ``"L"``.

    Captured maps: ``"height"`` B×C×H×1 and ``"width"`` B×C×1×W.  See docs/provenance/ela.md (timm's
    ``EfficientLocalAttn`` differs: separate convs per axis, GroupNorm(1), SiLU before the sigmoid).
    """

    def __init__(self, channels: int, variant: str = "B") -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        self.variant = check_choice(variant, tuple(ELA_VARIANTS), self.owner, "variant")
        k, rule, gn = ELA_VARIANTS[variant]
        if rule == "C/8":
            check_arg(
                channels % 8 == 0,
                self.owner,
                "channels",
                f"a multiple of 8 for variant {variant!r} (conv groups = C/8)",
                channels,
            )
            groups = channels // 8
        else:
            groups = channels
        check_arg(
            channels % gn == 0,
            self.owner,
            "channels",
            f"a multiple of {gn} for variant {variant!r} (GroupNorm with {gn} groups)",
            channels,
        )
        self.kernel_size, self.groups, self.gn_groups = k, groups, gn
        self.conv = nn.Conv1d(channels, channels, k, padding=k // 2, groups=groups, bias=False)
        self.gn = nn.GroupNorm(gn, channels)

    def _axis(self, z: torch.Tensor) -> torch.Tensor:
        """σ(GN(Conv1d(z))) for z: B×C×L.  ``torch.group_norm`` (the ATen op) rather than ``F.group_norm``, whose
        Python-side check refuses groups of a single value (B = 1, L = 1, C = groups), normalised to 0."""
        y = torch.group_norm(self.conv(z), self.gn_groups, self.gn.weight, self.gn.bias, self.gn.eps)
        return torch.sigmoid(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        a_h = self._axis(axis_mean(x, 3)).unsqueeze(3)  # B×C×H×1
        a_w = self._axis(axis_mean(x, 2)).unsqueeze(2)  # B×C×1×W
        record(self, "height", a_h)
        record(self, "width", a_w)
        return axis_gates(x, a_h, a_w)
