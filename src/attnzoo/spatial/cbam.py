"""CBAM: Convolutional Block Attention Module (Woo, Park, Lee, Kweon; ECCV 2018) — the module and its two halves,
and timm's light CBAM (``lcbam``), which pools ½(mean + max) once on each side.

Paper: https://arxiv.org/abs/1807.06521
"""

from __future__ import annotations

import functools
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    Gate,
    SizeBound,
    ZPoolGate,
    as_map,
    check_nchw,
    check_rank_arg,
    check_spatial,
    conv_nd,
    hidden_width,
    inplace_ok,
    max_over,
    positive_int,
    renamed_args,
    spatial_axes,
    z_pool,
)
from ..registry import register

__all__ = ["CBAM", "CBAMChannelGate", "CBAMSpatialGate", "LightCBAM"]

_PAPER = "CBAM: Convolutional Block Attention Module (Woo, Park, Lee, Kweon; ECCV 2018)"
_URL = "https://arxiv.org/abs/1807.06521"
#: What the three CBAM modules register alike.
_register = functools.partial(register, family="spatial", paper=_PAPER, url=_URL, complexity="O(N)")


def mlp_on_vectors(v: torch.Tensor, fc1: nn.Conv2d, act: nn.Module, fc2: nn.Conv2d) -> torch.Tensor:
    """The 1×1-conv MLP ``fc2(act(fc1(·)))`` applied to pooled vectors (…×C, last axis the channels) as
    ``F.linear`` on the conv weights: no B×C×1×1 convolution calls."""
    h = act(F.linear(v, fc1.weight.flatten(1), fc1.bias))
    return F.linear(h, fc2.weight.flatten(1), fc2.bias)


@_register(
    "cbam_channel",
    summary="CBAM's channel gate: shared MLP on avg- and max-pooled features, summed, sigmoid.",
    maps=("gate",),
    dims=(1, 2, 3),
)
class CBAMChannelGate(Gate):
    """CBAM channel gate; B×C×H×W → B×C×H×W (B×C×L or B×C×D×H×W with ``dims=1`` or ``3``: both pools over every
    spatial axis).

    ``M_c = σ(MLP(avg(x)) + MLP(max(x)))`` with a shared MLP C → C/r → C (biases, ReLU), r = 16;
    ``y = x ⊙ M_c``.  Hidden width floored at ``min(min_hidden, C)`` (never 0).

    Args:
        channels: input channels C.
        reduction: r.
        hidden_channels: explicit hidden width.
        min_hidden: floor of the hidden width.
        dims: spatial rank of the maps (1, 2 or 3).

    Captured map: ``"gate"`` B×C×1×1 (B×C×1 / B×C×1×1×1).
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        hidden_channels: int | None = None,
        min_hidden: int = 8,
        *,
        dims: int = 2,
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, min_hidden, self.owner)
        self.channels, self.reduction, self.dims = channels, reduction, check_rank_arg(dims, self.owner)
        self.fc1 = conv_nd(dims)(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = conv_nd(dims)(hidden, channels, 1, bias=True)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1 (B×C×1 / B×C×1×1×1)."""
        # B×2×C: both pooled vectors through one MLP pass, stacked on a new axis (not the batch axis, which
        # ncnn cannot concatenate on).  The 1×1 convs act on vectors: F.linear on their weights.
        axes = spatial_axes(self.dims)
        pooled = torch.stack([x.mean(axes), max_over(x, axes)], dim=1)
        logits = mlp_on_vectors(pooled, self.fc1, self.act, self.fc2)
        return as_map(torch.sigmoid(logits[:, 0] + logits[:, 1]), self.dims)


@_register(
    "cbam_spatial",
    summary="CBAM's spatial gate: [max; mean] over channels → 7×7 conv → BN → sigmoid.",
    maps=("gate",),
    dims=(1, 2, 3),
)
class CBAMSpatialGate(Gate):
    """CBAM spatial gate; B×C×H×W → B×C×H×W (B×C×L or B×C×D×H×W with ``dims=1`` or ``3``: a k^d conv).

    ``M_s = σ(BN(Conv_k×k([max_c(x); mean_c(x)])))`` (official ``ChannelPool`` order [max, mean], conv without
    bias, BN) and ``y = x ⊙ M_s``; k odd (3 or 7 in the paper, default 7), no residual.

    Args:
        channels: input channels C (checked, not used by the weights).
        kernel_size: odd conv kernel size, or one odd side per axis (e.g. ``(3, 7, 7)`` for a video's D×H×W: a 7³
            kernel has 2·343 weights and mixes few frames).
        zero_init: zero the BN weight as the official ResNet builder (gate starts at 0.5 everywhere).
        dims: spatial rank of the maps (1, 2 or 3).

    Captured map: ``"gate"`` B×1×H×W (of rank ``dims`` + 2).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self, channels: int, kernel_size: int | tuple[int, ...] = 7, zero_init: bool = True, *, dims: int = 2
    ) -> None:
        super().__init__()
        positive_int(channels, self.owner, "channels")
        self.channels, self.kernel_size, self.dims = channels, kernel_size, check_rank_arg(dims, self.owner)
        self.gate = ZPoolGate(kernel_size, zero_init, self.owner, dims=dims)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×1×H×W."""
        return self.gate(z_pool(x, 1))


@_register(
    "cbam",
    summary="Channel gate then spatial gate, applied in sequence.",
    maps=("channel", "spatial"),
    dims=(1, 2, 3),
)
class CBAM(AttnModule):
    """CBAM: channel gate then spatial gate; B×C×H×W → B×C×H×W (B×C×L or B×C×D×H×W with ``dims=1`` or ``3``).

    ``x' = x ⊙ M_c(x)``, ``y = x' ⊙ M_s(x')`` — see :class:`CBAMChannelGate` and :class:`CBAMSpatialGate`.
    No residual inside.

    Args:
        channels: input channels C.
        reduction: r of the channel MLP.
        kernel_size: spatial conv kernel (odd; 7 or 3 in the paper), or one odd side per axis (``(3, 7, 7)``).
        spatial: apply the spatial gate (``spatial=False`` is the channel gate alone; formerly ``no_spatial``).
        hidden_channels, min_hidden: see :class:`CBAMChannelGate`.
        zero_init: see :class:`CBAMSpatialGate`.
        dims: spatial rank of the maps (1, 2 or 3).

    Captured maps: ``"channel"`` B×C×1×1 and ``"spatial"`` B×1×H×W (of rank ``dims`` + 2).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    @renamed_args(no_spatial=("spatial", lambda v: not v))
    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        kernel_size: int | tuple[int, ...] = 7,
        spatial: bool = True,
        hidden_channels: int | None = None,
        min_hidden: int = 8,
        zero_init: bool = True,
        *,
        dims: int = 2,
    ) -> None:
        super().__init__()
        self.channels, self.reduction, self.kernel_size, self.spatial = channels, reduction, kernel_size, bool(spatial)
        self.dims = check_rank_arg(dims, self.owner)
        self.channel_gate = CBAMChannelGate(channels, reduction, hidden_channels, min_hidden, dims=dims)
        self.spatial_gate = CBAMSpatialGate(channels, kernel_size, zero_init, dims=dims) if spatial else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
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


@register(
    "lcbam",
    family="spatial",
    paper="Light CBAM (timm LightCbamModule; CBAM: Woo, Park, Lee, Kweon, ECCV 2018)",
    url="https://github.com/huggingface/pytorch-image-models/blob/main/timm/layers/cbam.py",
    complexity="O(N)",
    summary="CBAM with ½(avg + max) pooled once: one MLP pass for the channel gate, a 1-channel 7×7 conv + BN spatial gate.",
    maps=("channel", "spatial"),
    test_kwargs={"hidden_channels": 4},  # C/16 is one hidden unit at the tests' C: one ReLU, dead at random
)
class LightCBAM(AttnModule):
    """Light CBAM (timm ``LightCbamModule``): channel gate then spatial gate; B×C×H×W → B×C×H×W.

    ``x' = x ⊙ σ(W₂ ReLU(W₁ ½(avg(x) + max(x))))`` (one bias-free MLP pass on the averaged pools, where CBAM runs
    the MLP on each pool and sums), then ``y = x' ⊙ σ(BN(Conv_k×k(½(mean_c(x') + max_c(x')))))`` (a one-channel
    map, conv without bias, BN with PyTorch's defaults, no zero init).  Hidden width max(⌊C/r + ½⌋, 1), the
    rounding of timm's ``make_divisible(C/r, 1)``.  timm's gate choice is ignored by both halves there (always
    a sigmoid); here it is a sigmoid.  See docs/provenance/lcbam.md.

    Args:
        channels: input channels C.
        reduction: r of the channel MLP (timm's ``rd_ratio`` = 1/r).
        hidden_channels: explicit hidden width (timm's ``rd_channels``).
        kernel_size: odd spatial conv kernel.

    Captured maps: ``"channel"`` B×C×1×1 and ``"spatial"`` B×1×H×W.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self, channels: int, reduction: float = 16, hidden_channels: int | None = None, kernel_size: int = 7
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, 1, self.owner)  # validates the arguments
        if hidden_channels is None:
            hidden = max(int(channels / reduction + 0.5), 1)
        self.channels, self.reduction, self.hidden_channels, self.kernel_size = (
            channels,
            reduction,
            hidden_channels,
            kernel_size,
        )
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.spatial = ZPoolGate(kernel_size, False, self.owner, in_channels=1, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        pooled = 0.5 * (x.mean((2, 3)) + max_over(x, (2, 3)))
        gate = torch.sigmoid(mlp_on_vectors(pooled, self.fc1, self.act, self.fc2))[:, :, None, None]
        record(self, "channel", gate)
        x = x * gate
        gate = self.spatial(0.5 * (x.mean(1, keepdim=True) + max_over(x, 1)[:, None]))
        record(self, "spatial", gate)
        return x.mul_(gate) if inplace_ok() else x * gate
