"""Spatial and hybrid gates: CBAM (and its two halves) and Triplet Attention.

All modules take and return B×C×H×W and return ``x * attention`` with no residual inside.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import layers
from .channel import reduced_width
from .capture import is_capturing, record
from .registry import register

__all__ = ["CBAM", "CBAMChannelGate", "CBAMSpatialGate", "TripletAttention"]


def z_pool(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Concatenate [max, mean] over ``dim`` as two channels at dim 1 (the official CBAM / Triplet order)."""
    return torch.stack([layers.max_over(x, dim), x.mean(dim)], dim=1)


class _PoolConvGate(nn.Module):
    """σ(BN(Conv_k×k([max; mean]))) on a 2-channel pooled map: the shared piece of CBAM's and Triplet's gates.

    Conv without bias, BatchNorm(1, eps 1e-5, momentum 0.01) as the official code; ``zero_init`` sets the BN
    weight to 0 as the official ResNet builders do for the spatial gate (the gate starts at σ(0) = 0.5).
    """

    def __init__(self, kernel_size: int, zero_init: bool, owner: str) -> None:
        super().__init__()
        layers.odd_kernel(kernel_size, owner)
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)
        if zero_init:
            nn.init.zeros_(self.bn.weight)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.conv(pooled)))


@register(
    "cbam_channel",
    family="spatial",
    paper="CBAM: Convolutional Block Attention Module (Woo, Park, Lee, Kweon; ECCV 2018)",
    url="https://arxiv.org/abs/1807.06521",
    complexity="O(N)",
    summary="CBAM's channel gate: shared MLP on avg- and max-pooled features, summed, sigmoid.",
)
class CBAMChannelGate(nn.Module):
    """CBAM channel gate; B×C×H×W → B×C×H×W.

    ``M_c = σ(MLP(avg(x)) + MLP(max(x)))`` with a shared MLP C → C/r → C (biases, ReLU), r = 16;
    ``y = x ⊙ M_c``.  Hidden width floored at ``min(min_hidden, C)`` (never 0).

    Args:
        channels: input channels C.
        reduction: r.
        hidden_channels: explicit hidden width.
        min_hidden: floor of the hidden width.
    """

    def __init__(self, channels: int, reduction: float = 16, hidden_channels: int | None = None, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = reduced_width(channels, reduction, hidden_channels, min_hidden, "CBAMChannelGate")
        self.channels = channels
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1."""
        b = x.shape[0]
        pooled = torch.cat([x.mean((2, 3)), layers.max_over(x, (2, 3))], dim=0)  # 2B×C: one MLP pass for both
        # The 1×1 convs act on vectors: F.linear on their weights, without the convolution's per-call overhead.
        h = self.act(F.linear(pooled, self.fc1.weight.flatten(1), self.fc1.bias))
        logits = F.linear(h, self.fc2.weight.flatten(1), self.fc2.bias)
        return torch.sigmoid(logits[:b] + logits[b:])[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "CBAMChannelGate")
        gate = self.attention(x)
        record(self, "gate", gate)
        return x * gate


@register(
    "cbam_spatial",
    family="spatial",
    paper="CBAM: Convolutional Block Attention Module (Woo, Park, Lee, Kweon; ECCV 2018)",
    url="https://arxiv.org/abs/1807.06521",
    complexity="O(N)",
    summary="CBAM's spatial gate: [max; mean] over channels → 7×7 conv → BN → sigmoid.",
)
class CBAMSpatialGate(nn.Module):
    """CBAM spatial gate; B×C×H×W → B×C×H×W.

    ``M_s = σ(BN(Conv_k×k([max_c(x); mean_c(x)])))`` (official ``ChannelPool`` order [max, mean], conv without
    bias, BN) and ``y = x ⊙ M_s``.  The community ``CBAMBlock`` defaults to k = 49, pads even kernels wrongly
    and adds a residual; here k is odd (3 or 7 in the paper, default 7) and there is no residual.

    Args:
        channels: input channels C (checked, not used by the weights).
        kernel_size: odd conv kernel size.
        zero_init: zero the BN weight as the official ResNet builder (gate starts at 0.5 everywhere).
    """

    def __init__(self, channels: int, kernel_size: int = 7, zero_init: bool = True) -> None:
        super().__init__()
        layers.positive_int(channels, "CBAMSpatialGate", "channels")
        self.channels = channels
        self.gate = _PoolConvGate(kernel_size, zero_init, "CBAMSpatialGate")

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×1×H×W."""
        return self.gate(z_pool(x, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "CBAMSpatialGate")
        gate = self.attention(x)
        record(self, "gate", gate)
        return x * gate


@register(
    "cbam",
    family="spatial",
    paper="CBAM: Convolutional Block Attention Module (Woo, Park, Lee, Kweon; ECCV 2018)",
    url="https://arxiv.org/abs/1807.06521",
    complexity="O(N)",
    summary="Channel gate then spatial gate, applied in sequence.",
)
class CBAM(nn.Module):
    """CBAM (Woo et al., ECCV 2018): channel gate then spatial gate; B×C×H×W → B×C×H×W.

    ``x' = x ⊙ M_c(x)``, ``y = x' ⊙ M_s(x')`` — see :class:`CBAMChannelGate` and :class:`CBAMSpatialGate`.
    No residual inside (the community ``CBAMBlock`` returns ``x + CBAM(x)``).

    Args:
        channels: input channels C.
        reduction: r of the channel MLP.
        kernel_size: spatial conv kernel (odd; 7 or 3 in the paper).
        no_spatial: use the channel gate only.
        hidden_channels, min_hidden: see :class:`CBAMChannelGate`.
        zero_init: see :class:`CBAMSpatialGate`.
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        kernel_size: int = 7,
        no_spatial: bool = False,
        hidden_channels: int | None = None,
        min_hidden: int = 8,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.channel_gate = CBAMChannelGate(channels, reduction, hidden_channels, min_hidden)
        self.spatial_gate = None if no_spatial else CBAMSpatialGate(channels, kernel_size, zero_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "CBAM")
        gate = self.channel_gate.attention(x)
        record(self, "channel", gate)
        x = x * gate
        if self.spatial_gate is not None:
            gate = self.spatial_gate.attention(x)
            record(self, "spatial", gate)
            # x is this module's own intermediate: without autograd, scale it in place (one full-size buffer
            # less; fresh large buffers cost page faults on CPU).
            x = x.mul_(gate) if layers.inplace_ok() else x * gate
        return x


@register(
    "triplet",
    family="spatial",
    paper="Rotate to Attend: Convolutional Triplet Attention Module (Misra et al.; WACV 2021)",
    url="https://arxiv.org/abs/2010.03045",
    complexity="O(N)",
    summary="Three Z-pool gates over the (C,W), (H,C) and (H,W) planes, averaged.",
)
class TripletAttention(nn.Module):
    """Triplet Attention (Misra et al., WACV 2021); B×C×H×W → B×C×H×W.

    Three gates, each ``σ(BN(Conv_k×k([max; mean])))``: over the (C, W) plane pooling H, over the (H, C)
    plane pooling W, and over (H, W) pooling C; ``y = x ⊙ (g_cw + g_hc + g_hw) / 3`` (``/2`` of the two
    cross-dimension gates with ``no_spatial``).  The official code permutes x and makes contiguous copies
    for each branch; here each branch pools x along its axis directly, which gives the same values with no
    copy of x.  As the official ResNet builder, the H–W gate's BN weight starts at 0 (``zero_init``).

    Args:
        channels: input channels C (checked, not used by the weights).
        kernel_size: odd conv kernel size (7 official, 3 also reported).
        no_spatial: drop the H–W gate.
        zero_init: zero the H–W gate's BN weight.
    """

    def __init__(self, channels: int, kernel_size: int = 7, no_spatial: bool = False, zero_init: bool = True) -> None:
        super().__init__()
        layers.positive_int(channels, "TripletAttention", "channels")
        self.channels = channels
        self.cw = _PoolConvGate(kernel_size, False, "TripletAttention")
        self.hc = _PoolConvGate(kernel_size, False, "TripletAttention")
        self.hw = None if no_spatial else _PoolConvGate(kernel_size, zero_init, "TripletAttention")

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The averaged gate, broadcastable to B×C×H×W."""
        g_cw = self.cw(z_pool(x, 2)).squeeze(1).unsqueeze(2)  # pooled over H: plane (C, W) -> B, C, 1, W
        g_hc = self.hc(z_pool(x, 3).transpose(2, 3)).squeeze(1).transpose(1, 2).unsqueeze(3)  # plane (H, C) -> B, C, H, 1
        # Scale the small per-branch gates, then one broadcast sum into a single full-size buffer: the
        # average of the three branches without extra full-size temporaries.
        if self.hw is None:
            return g_cw * 0.5 + g_hc * 0.5
        g_hw = self.hw(z_pool(x, 1))  # B, 1, H, W
        return (g_cw * (1.0 / 3.0) + g_hc * (1.0 / 3.0)).add_(g_hw * (1.0 / 3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "TripletAttention")
        gate = self.attention(x)
        record(self, "gate", gate)
        # Without autograd the gate buffer (this module's own, unless a capture holds it) takes the product
        # in place.
        return gate.mul_(x) if layers.inplace_ok() and not is_capturing(self) else x * gate
