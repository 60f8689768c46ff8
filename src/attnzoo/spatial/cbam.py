"""CBAM: Convolutional Block Attention Module (Woo, Park, Lee, Kweon; ECCV 2018) — the module and its two halves.

Paper: https://arxiv.org/abs/1807.06521
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..layers import (
    AttnModule,
    Gate,
    ZPoolGate,
    check_nchw,
    hidden_width,
    inplace_ok,
    max_over,
    positive_int,
    renamed_args,
    z_pool,
)
from ..registry import register

__all__ = ["CBAM", "CBAMChannelGate", "CBAMSpatialGate"]

_PAPER = "CBAM: Convolutional Block Attention Module (Woo, Park, Lee, Kweon; ECCV 2018)"
_URL = "https://arxiv.org/abs/1807.06521"
#: What the three CBAM modules register alike.
_register = functools.partial(register, family="spatial", paper=_PAPER, url=_URL, complexity="O(N)")


@_register(
    "cbam_channel",
    summary="CBAM's channel gate: shared MLP on avg- and max-pooled features, summed, sigmoid.",
    maps=("gate",),
)
class CBAMChannelGate(Gate):
    """CBAM channel gate; B×C×H×W → B×C×H×W.

    ``M_c = σ(MLP(avg(x)) + MLP(max(x)))`` with a shared MLP C → C/r → C (biases, ReLU), r = 16;
    ``y = x ⊙ M_c``.  Hidden width floored at ``min(min_hidden, C)`` (never 0).

    Args:
        channels: input channels C.
        reduction: r.
        hidden_channels: explicit hidden width.
        min_hidden: floor of the hidden width.

    Captured map: ``"gate"`` B×C×1×1.
    """

    def __init__(
        self, channels: int, reduction: float = 16, hidden_channels: int | None = None, min_hidden: int = 8
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, min_hidden, self.owner)
        self.channels, self.reduction = channels, reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1."""
        # B×2×C: both pooled vectors through one MLP pass, stacked on a new axis (not the batch axis, which
        # ncnn cannot concatenate on).  The 1×1 convs act on vectors: F.linear on their weights.
        pooled = torch.stack([x.mean((2, 3)), max_over(x, (2, 3))], dim=1)
        h = self.act(F.linear(pooled, self.fc1.weight.flatten(1), self.fc1.bias))
        logits = F.linear(h, self.fc2.weight.flatten(1), self.fc2.bias)
        return torch.sigmoid(logits[:, 0] + logits[:, 1])[:, :, None, None]


@_register(
    "cbam_spatial",
    summary="CBAM's spatial gate: [max; mean] over channels → 7×7 conv → BN → sigmoid.",
    maps=("gate",),
)
class CBAMSpatialGate(Gate):
    """CBAM spatial gate; B×C×H×W → B×C×H×W.

    ``M_s = σ(BN(Conv_k×k([max_c(x); mean_c(x)])))`` (official ``ChannelPool`` order [max, mean], conv without
    bias, BN) and ``y = x ⊙ M_s``; k odd (3 or 7 in the paper, default 7), no residual.

    Args:
        channels: input channels C (checked, not used by the weights).
        kernel_size: odd conv kernel size.
        zero_init: zero the BN weight as the official ResNet builder (gate starts at 0.5 everywhere).

    Captured map: ``"gate"`` B×1×H×W.
    """

    def __init__(self, channels: int, kernel_size: int = 7, zero_init: bool = True) -> None:
        super().__init__()
        positive_int(channels, self.owner, "channels")
        self.channels, self.kernel_size = channels, kernel_size
        self.gate = ZPoolGate(kernel_size, zero_init, self.owner)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×1×H×W."""
        return self.gate(z_pool(x, 1))


@_register(
    "cbam",
    summary="Channel gate then spatial gate, applied in sequence.",
    maps=("channel", "spatial"),
)
class CBAM(AttnModule):
    """CBAM: channel gate then spatial gate; B×C×H×W → B×C×H×W.

    ``x' = x ⊙ M_c(x)``, ``y = x' ⊙ M_s(x')`` — see :class:`CBAMChannelGate` and :class:`CBAMSpatialGate`.
    No residual inside.

    Args:
        channels: input channels C.
        reduction: r of the channel MLP.
        kernel_size: spatial conv kernel (odd; 7 or 3 in the paper).
        spatial: apply the spatial gate (``spatial=False`` is the channel gate alone; formerly ``no_spatial``).
        hidden_channels, min_hidden: see :class:`CBAMChannelGate`.
        zero_init: see :class:`CBAMSpatialGate`.

    Captured maps: ``"channel"`` B×C×1×1 and ``"spatial"`` B×1×H×W.
    """

    @renamed_args(no_spatial=("spatial", lambda v: not v))
    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        kernel_size: int = 7,
        spatial: bool = True,
        hidden_channels: int | None = None,
        min_hidden: int = 8,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        self.channels, self.reduction, self.kernel_size, self.spatial = channels, reduction, kernel_size, bool(spatial)
        self.channel_gate = CBAMChannelGate(channels, reduction, hidden_channels, min_hidden)
        self.spatial_gate = CBAMSpatialGate(channels, kernel_size, zero_init) if spatial else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        gate = self.channel_gate.gate_map(x)
        record(self, "channel", gate)
        x = x * gate
        if self.spatial_gate is not None:
            gate = self.spatial_gate.gate_map(x)
            record(self, "spatial", gate)
            # x is this module's own intermediate: without autograd, scale it in place (one full-size buffer
            # less; fresh large buffers cost page faults on CPU).
            x = x.mul_(gate) if inplace_ok() else x * gate
        return x
