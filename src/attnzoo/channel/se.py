"""Squeeze-and-Excitation (Hu, Shen, Sun; CVPR 2018).  Paper: https://arxiv.org/abs/1709.01507"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..functional.gating import SPATIAL_MEAN_FORM, spatial_mean
from ..layers import ActLayer, Gate, as_map, check_rank_arg, conv_nd, get_act, hidden_width
from ..registry import register

__all__ = ["SqueezeExcite"]


@register(
    "se",
    family="channel",
    paper="Squeeze-and-Excitation Networks (Hu, Shen, Sun; CVPR 2018)",
    url="https://arxiv.org/abs/1709.01507",
    complexity="O(N)",
    summary="Global average pool → FC → ReLU → FC → sigmoid channel gate.",
    maps=("gate",),
    forms=(SPATIAL_MEAN_FORM,),
    dims=(1, 2, 3),
)
class SqueezeExcite(Gate):
    """Squeeze-and-Excitation gate; B×C×H×W → B×C×H×W (B×C×L or B×C×D×H×W with ``dims=1`` or ``3``).

    ``y = x * sigmoid(W2 relu(W1 GAP(x)))``.  As the official Caffe models both FCs have a bias and the
    reduction is 16; the hidden width ``C // reduction`` never drops below ``min(min_hidden, C)``.  The FCs are
    1×1 convolutions, so weights load into timm's ``SEModule``.  Community copies: see docs/provenance.md.
    In 1-D and 3-D the pool averages every spatial axis (as MONAI's ``ChannelSELayer`` and X3D; nnU-Net's 3-D
    ``SqueezeExcite`` pools only H and W).

    Args:
        channels: input channels C.
        reduction: bottleneck ratio r (hidden = C // r).
        hidden_channels: explicit hidden width (overrides ``reduction``).
        min_hidden: floor of the hidden width.
        act: hidden activation.
        gate: gate activation (``"sigmoid"``; ``"hard_sigmoid"`` for MobileNetV3-style SE).
        dims: spatial rank of the maps (1, 2 or 3).

    Captured map: ``"gate"`` B×C×1×1 (B×C×1 / B×C×1×1×1).
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        hidden_channels: int | None = None,
        min_hidden: int = 8,
        act: ActLayer = "relu",
        gate: ActLayer = "sigmoid",
        *,
        dims: int = 2,
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, min_hidden, self.owner)
        self.channels, self.reduction, self.dims = channels, reduction, check_rank_arg(dims, self.owner)
        self.fc1 = conv_nd(dims)(channels, hidden, 1, bias=True)
        self.act = get_act(act, self.owner)
        self.fc2 = conv_nd(dims)(hidden, channels, 1, bias=True)
        self.gate = get_act(gate, self.owner)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1 (B×C×1 / B×C×1×1×1)."""
        # The 1×1 convs act on one B×C vector: F.linear on their weights is the same product without the
        # convolution's per-call overhead (it dominated this gate's time on small maps).
        s = spatial_mean(x, dims=self.dims)
        h = self.act(F.linear(s, self.fc1.weight.flatten(1), self.fc1.bias))
        return as_map(self.gate(F.linear(h, self.fc2.weight.flatten(1), self.fc2.bias)), self.dims)
