"""SCSA: Exploring the Synergistic Effects Between Spatial and Channel Attention (Si, Xu, Zhu, … ; Neurocomputing
2025).  Paper: https://arxiv.org/abs/2407.05128
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    attention,
    check_arg,
    check_dropout,
    check_heads,
    check_nchw,
    inplace_ok,
    odd_kernel,
    positive_int,
)
from ..layers.pooling import avg_reduce
from ..registry import register

__all__ = ["SCSA"]


@register(
    "scsa",
    family="spatial",
    paper="SCSA: Exploring the Synergistic Effects Between Spatial and Channel Attention (Si et al.; "
    "Neurocomputing 2025)",
    url="https://arxiv.org/abs/2407.05128",
    complexity="O(N)",
    summary="Multi-scale depthwise 1-D convs on row and column means gate H and W, then a channel self-attention on "
    "a 7×7-pooled map gates C.",
    maps=("gate_h", "gate_w", "attn", "gate"),
    test_kwargs={"heads": 4},
)
class SCSA(AttnModule):
    """SCSA: shareable multi-semantic spatial attention then progressive channel self-attention; B×C×H×W → same.

    SMSA: the row means ``x_h`` (B×C×H) and column means ``x_w`` (B×C×W) are split into four channel groups, each
    filtered by its own depthwise 1-D conv (kernels 3, 5, 7, 9, with bias; the same convs for rows and columns),
    GroupNorm(4) (one for rows, one for columns) and a sigmoid: ``z = x ⊙ g_h ⊙ g_w``.  PCSA: ``y = GN₁(avgpool_7(z))``
    (GroupNorm with one group), q, k, v per-channel 1×1 (depthwise) convs, per head the channel-to-channel attention
    ``softmax(q kᵀ / √d) v`` over the pooled positions (d = C/heads), averaged over them, sigmoid:
    ``out = z ⊙ σ(mean_N(attn))``.  Official defaults: heads 8, window 7, kernels (3, 5, 7, 9), no qkv bias.

    Any H×W ≥ 1: the official ``AvgPool2d(7, 7)`` drops the last H mod 7 rows and W mod 7 columns and fails below
    7×7 (an empty map); here the pooling keeps partial windows, averaged over their valid pixels (a map smaller
    than the window pools to its mean).  Equal to the official computation when 7 divides H and W.

    Args:
        channels: input channels C (a multiple of 4 and of ``heads``).
        heads: attention heads of the channel self-attention.
        window_size: side of the average-pooling windows before the channel attention.
        kernels: the four depthwise kernel sizes (odd), one per channel quarter.
        qkv_bias: bias in the q, k, v convs.
        attn_drop: dropout on the attention probabilities.

    Captured maps: ``"gate_h"`` B×C×H×1, ``"gate_w"`` B×C×1×W, ``"attn"`` B×heads×d×d, ``"gate"`` B×C×1×1.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "window_size": SizeBound(KERNEL_BOUND, "window side"),
        "kernels": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        window_size: int = 7,
        kernels: Sequence[int] = (3, 5, 7, 9),
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        check_arg(channels % 4 == 0, owner, "channels", "a multiple of 4 (four channel groups, GroupNorm(4))", channels)
        check_heads(heads, channels, owner)
        positive_int(window_size, owner, "window_size")
        check_arg(
            isinstance(kernels, (list, tuple)) and len(kernels) == 4, owner, "kernels", "four kernel sizes", kernels
        )
        kernels = tuple(odd_kernel(k, owner, "each kernel in kernels") for k in kernels)
        self.channels, self.heads, self.window_size, self.kernels = channels, heads, window_size, kernels
        self.qkv_bias, self.attn_drop = bool(qkv_bias), check_dropout(attn_drop, owner, "attn_drop")
        q = channels // 4
        self.dwcs = nn.ModuleList(nn.Conv1d(q, q, k, padding=k // 2, groups=q) for k in kernels)
        self.norm_h = nn.GroupNorm(4, channels)
        self.norm_w = nn.GroupNorm(4, channels)
        self.norm = nn.GroupNorm(1, channels)
        self.q = nn.Conv2d(channels, channels, 1, groups=channels, bias=qkv_bias)
        self.k = nn.Conv2d(channels, channels, 1, groups=channels, bias=qkv_bias)
        self.v = nn.Conv2d(channels, channels, 1, groups=channels, bias=qkv_bias)

    def _multi_scale(self, s: torch.Tensor) -> torch.Tensor:
        """The four depthwise convs on the four channel quarters of B×C×L, as one depthwise conv: each kernel
        zero-padded to the largest (the same values as four convs with their own ``k // 2`` padding)."""
        kmax = max(self.kernels)
        convs: list[nn.Conv1d] = list(self.dwcs)  # type: ignore[arg-type]
        w = torch.cat([F.pad(c.weight, ((kmax - k) // 2, (kmax - k) // 2)) for c, k in zip(convs, self.kernels)])
        b = torch.cat([c.bias for c in convs if c.bias is not None])
        return F.conv1d(s, w, b, padding=kmax // 2, groups=self.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        gh = torch.sigmoid(self.norm_h(self._multi_scale(x.mean(3))))[:, :, :, None]
        gw = torch.sigmoid(self.norm_w(self._multi_scale(x.mean(2))))[:, :, None, :]
        record(self, "gate_h", gh)
        record(self, "gate_w", gw)
        z = x * gh
        z = z.mul_(gw) if inplace_ok() else z * gw
        # progressive channel self-attention on the pooled map (channels as tokens, pooled positions as features)
        y = self.norm(avg_reduce(z, self.window_size))
        h, c = self.heads, self.channels
        q = self._dw(self.q, y).flatten(2).unflatten(1, (h, c // h))  # B×heads×d×N'
        k = self._dw(self.k, y).flatten(2).unflatten(1, (h, c // h))
        v = self._dw(self.v, y).mean((2, 3)).view(-1, h, c // h, 1)  # the mean over N' commutes with attn @ v
        drop = self.attn_drop if self.training else 0.0
        a = attention(q, k, v, scale=(c // h) ** -0.5, dropout_p=drop, module=self).flatten(1)
        gate = torch.sigmoid(a)[:, :, None, None]
        record(self, "gate", gate)
        return z.mul_(gate) if inplace_ok() else z * gate

    @staticmethod
    def _dw(conv: nn.Conv2d, y: torch.Tensor) -> torch.Tensor:
        """A depthwise 1×1 conv: a per-channel scale (and bias)."""
        out = y * conv.weight.view(1, -1, 1, 1)
        return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)
