"""CenterMask: Real-Time Anchor-Free Instance Segmentation (Lee, Park; CVPR 2020), its effective Squeeze-Excitation
(eSE) block.  Paper: https://arxiv.org/abs/1911.06667"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..functional.gating import SPATIAL_MEAN_FORM, spatial_mean
from ..layers import ActLayer, Gate, as_map, check_rank_arg, conv_nd, get_act, positive_int
from ..registry import register

__all__ = ["EffectiveSqueezeExcite"]


@register(
    "ese",
    family="channel",
    paper="CenterMask: Real-Time Anchor-Free Instance Segmentation (Lee, Park; CVPR 2020)",
    url="https://arxiv.org/abs/1911.06667",
    complexity="O(N)",
    summary="Global average pool → one C→C 1×1 conv (no bottleneck) → hard-sigmoid channel gate.",
    maps=("gate",),
    forms=(SPATIAL_MEAN_FORM,),
    dims=(1, 2, 3),
)
class EffectiveSqueezeExcite(Gate):
    """Effective SE (VoVNetV2's eSE); B×C×H×W → B×C×H×W (B×C×L or B×C×D×H×W with ``dims=1`` or ``3``: the pool
    averages every spatial axis).

    ``y = x * hsigmoid(W GAP(x) + b)`` with one C×C 1×1 conv (with bias): SE without the channel reduction that
    loses information.  ``hsigmoid(z) = ReLU6(z + 3) / 6`` as the official ``Hsigmoid``.  The conv is named
    ``fc`` as timm's ``EffectiveSEModule`` and the official ``eSEModule``, so their weights load as they are.

    Args:
        channels: input channels C.
        gate: gate activation (``"hard_sigmoid"``; ``"sigmoid"`` for the smooth variant).
        dims: spatial rank of the maps (1, 2 or 3).

    Captured map: ``"gate"`` B×C×1×1 (B×C×1 / B×C×1×1×1).  Differences from the copies: see docs/provenance/ese.md.
    """

    def __init__(self, channels: int, gate: ActLayer = "hard_sigmoid", *, dims: int = 2) -> None:
        super().__init__()
        positive_int(channels, self.owner, "channels")
        self.channels, self.dims = channels, check_rank_arg(dims, self.owner)
        self.fc = conv_nd(dims)(channels, channels, 1, bias=True)
        self.gate = get_act(gate, self.owner)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1."""
        # F.linear on the 1×1 conv's weights: the same product on the B×C vector, without a convolution call.
        s = spatial_mean(x, dims=self.dims)
        return as_map(self.gate(F.linear(s, self.fc.weight.flatten(1), self.fc.bias)), self.dims)
