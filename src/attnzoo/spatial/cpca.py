"""CPCA: Channel prior convolutional attention for medical image segmentation (Huang, Chen, Zou, Lu, Chen; Comput.
Biol. Med. 2024).  Paper: https://arxiv.org/abs/2306.05196

Official code: Cuthbert-Huang/CPCANet (Apache-2.0), ``nnunet/network_architecture/CPCANet.py`` (``RepBlock`` and
its ``ChannelAttention``); re-written here (docs/provenance/cpca.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..layers import AttnModule, check_nchw, hidden_width
from ..registry import register

__all__ = ["ChannelPriorConvAttention"]

_STRIPS = (7, 11, 21)


class _ChannelMLP(nn.Module):
    """The channel prior's shared MLP (the official ``ChannelAttention``'s ``fc1``, ``fc2``)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(v)))


def _depthwise(channels: int, kh: int, kw: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, (kh, kw), padding=(kh // 2, kw // 2), groups=channels)


@register(
    "cpca",
    family="spatial",
    paper="Channel prior convolutional attention for medical image segmentation (Huang et al.; Comput. Biol. "
    "Med. 2024)",
    url="https://arxiv.org/abs/2306.05196",
    complexity="O(N)",
    summary="Channel prior (two sigmoids of one MLP on avg and max pools, summed) then a spatial attention from "
    "a depthwise 5×5 and 1×k / k×1 strip convs (7, 11, 21), mixed by one shared 1×1 conv.",
    maps=("channel", "spatial"),
)
class ChannelPriorConvAttention(AttnModule):
    """CPCA block (the official ``RepBlock`` of CPCANet); B×C×H×W → B×C×H×W.

    ``x̃ = c ⊙ u`` with ``u = GELU(P(x))`` and the channel prior ``c = σ(MLP(avg u)) + σ(MLP(max u))`` (one
    MLP: 1×1 conv C → C/4 with bias, ReLU, 1×1 conv back with bias; c ∈ (0, 2)); ``z = DW₅ₓ₅(x̃)``,
    ``s = z + Σ_{k ∈ (7, 11, 21)} DW_{k×1}(DW_{1×k}(z))`` (depthwise, with bias);
    ``out = P(P(s) ⊙ x̃)``.  P is **one** 1×1 conv (with bias) applied three times, as the official code.
    No residual, no norm; PyTorch's default init.  Parameter names are the official ones (``ca.fc1``,
    ``dconv5_5``, ``dconv1_7``, ..., ``conv``), so CPCANet weights load unchanged.

    Args:
        channels: input channels C.
        reduction: the channel MLP's ratio (official 4; hidden width at least 1).

    Captured maps: ``"channel"`` B×C×1×1 (the prior c), ``"spatial"`` B×C×H×W (P(s)).
    """

    def __init__(self, channels: int, reduction: float = 4) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, None, 1, self.owner)
        self.channels, self.reduction = channels, reduction
        self.ca = _ChannelMLP(channels, hidden)
        self.dconv5_5 = _depthwise(channels, 5, 5)
        for k in _STRIPS:
            self.add_module(f"dconv1_{k}", _depthwise(channels, 1, k))
            self.add_module(f"dconv{k}_1", _depthwise(channels, k, 1))
        self.conv = nn.Conv2d(channels, channels, 1)

    def channel_prior(self, u: torch.Tensor) -> torch.Tensor:
        """``σ(MLP(avg u)) + σ(MLP(max u))``, B×C×1×1: both pooled vectors through the MLP side by side (a
        B×C×1×2 map)."""
        pooled = torch.cat([u.mean((2, 3), keepdim=True), u.amax((2, 3), keepdim=True)], dim=3)
        a = torch.sigmoid(self.ca(pooled))
        return a.sum(3, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        u = F.gelu(self.conv(x))
        c = self.channel_prior(u)
        record(self, "channel", c)
        u = u * c
        z = self.dconv5_5(u)
        s = z
        for k in _STRIPS:
            s = s + getattr(self, f"dconv{k}_1")(getattr(self, f"dconv1_{k}")(z))
        spatial = self.conv(s)
        record(self, "spatial", spatial)
        return self.conv(spatial * u)
