"""HS-FPN, the high-level screening-feature pyramid of MFDS-DETR (Chen et al.; Computers in Biology and Medicine 2024).

Paper: Accurate leukocyte detection based on deformable-DETR and multi-level feature fusion for aiding diagnosis of
blood diseases (Chen, Zhang, Chen, … Gao; CBM 2024, art. 107917), https://arxiv.org/abs/2401.00926.  Written from
the paper's equations; the official code (JustlfC03/MFDS-DETR) has no licence and was not read or copied
(docs/provenance/hs_fpn.md).
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..capture import record
from ..layers import AttnModule, Gate, check_arg, check_pyramid, hidden_width, positive_int
from ..layers.hosts import Inner, build_inner, check_inner_output
from ..layers.norm import group_norm_groups
from ..layers.pooling import max_over
from ..layers.pyramid import check_level_channels, resize_to
from ..registry import register

__all__ = ["HSChannelGate", "HighLevelScreeningFPN"]


class HSChannelGate(Gate):
    """HS-FPN's channel attention CA: ``σ(MLP(avg(x)) + MLP(max(x)))``, one MLP C → C/r → C without biases (ReLU),
    r = 4 (CBAM's channel gate without biases).  ``forward(x) = x ⊙ CA(x)``; ``gate_map(x)`` is CA(x),
    B×C×1×1 (captured as ``"gate"``)."""

    def __init__(self, channels: int, reduction: float = 4) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, None, 1, self.owner)
        self.channels, self.reduction = channels, reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.stack([x.mean((2, 3)), max_over(x, (2, 3))], dim=1)  # B×2×C (not on the batch axis)
        logits = F.linear(F.relu(F.linear(pooled, self.fc1.weight.flatten(1))), self.fc2.weight.flatten(1))
        return torch.sigmoid(logits[:, 0] + logits[:, 1])[:, :, None, None]


class OutputConv(nn.Sequential):
    """Conv₃ₓ₃ (no bias) → GroupNorm(32) → ReLU, each output level's smoothing conv (fewer groups below 64
    channels, so that every group holds at least two channels and a 1×1 map normalises)."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.GroupNorm(group_norm_groups(channels, max(1, min(32, channels // 2))), channels),
            nn.ReLU(),
        )


@register(
    "hs_fpn",
    family="fusion",
    paper="Accurate leukocyte detection based on deformable-DETR and multi-level feature fusion (MFDS-DETR; Chen "
    "et al.; Computers in Biology and Medicine 2024)",
    url="https://arxiv.org/abs/2401.00926",
    layout="pyramid",
    complexity="O(N)",
    summary="High-level screening FPN: channel-gated feature selection per level, then the upsampled high level "
    "screens each lower level through its own channel gate (transposed-conv fusion); gate= pluggable.",
    test_kwargs={"out_channels": 16},
    maps=("fusion_gate_*",),
)
class HighLevelScreeningFPN(AttnModule):
    """HS-FPN (MFDS-DETR); ``[x_0, ..., x_{L-1}]`` (finest first) → as many maps of ``out_channels`` at the
    inputs' sizes.

    Feature selection: ``FS(x_i) = Conv₁ₓ₁(CA(x_i) ⊙ x_i)`` → ``out_channels``, CA the channel gate of
    :class:`HSChannelGate` (r = 4, no biases).  Selective feature fusion, from the top level down:
    ``h' = ConvT₃ₓ₃,s2(f_high)`` (exactly 2H×2W; bilinearly resized to the level's size when that is odd),
    ``f_i = CA_w(h') ⊙ FS(x_i) + h'`` (``CA_w`` the gate of another channel gate on h'), with
    ``f_{L-1} = FS(x_{L-1})``.  ``cascade=True`` (the paper): ``f_high = f_{i+1}``, the fused level above;
    ``cascade=False`` (the official code): the high feature of every level is the top level carried down by the
    chain of transposed convs (``h'_i = ConvT_i(h'_{i+1})``, ``h'_{L-1} = f_{L-1}``).  Each ``f_i`` then passes
    Conv₃ₓ₃ + GroupNorm(32) + ReLU.

    ``gate`` replaces the feature-selection product ``CA(x_i) ⊙ x_i`` by ``gate(x_i)``: a registered same-shape
    ``nchw`` module name (``"ela"``, ``"coord"``, ``"ema"``, ... built with the level's width C_i), an
    ``nn.Module`` (copied per level) or a factory ``C_i -> nn.Module``.  The selective fusion keeps its channel
    gate CA_w.

    Args:
        channels: widths C_i of the input levels, finest first (at least 2).
        out_channels: width of every output level (256).
        cascade: the paper's cascade (True) or the code's chain from the top level (False).
        gate: the feature-selection gate (None: CA).
        reduction: r of the channel gates (4).

    Captured maps: ``"fusion_gate_{i}"`` B×out_channels×1×1, the selective fusion's gate CA_w(h') of level i
    (the feature-selection gates under their own names, ``"select_gate.{i}"``).
    """

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: int = 256,
        cascade: bool = True,
        gate: Inner = None,
        reduction: float = 4,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels = check_level_channels(channels, owner)
        self.out_channels = d = positive_int(out_channels, owner, "out_channels")
        check_arg(isinstance(cascade, bool), owner, "cascade", "a bool", cascade)
        self.cascade, self.reduction = cascade, reduction
        hidden_width(d, reduction, None, 1, owner)  # validates reduction
        self.select_gate = nn.ModuleList(
            build_inner(gate, c, owner, "gate", partial(HSChannelGate, c, reduction)) for c in self.channels
        )
        self.select_conv = nn.ModuleList(nn.Conv2d(c, d, 1) for c in self.channels)
        n = len(self.channels)
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(d, d, 3, 2, 1, output_padding=1) for _ in range(n - 1))
        self.fusion_gate = nn.ModuleList(HSChannelGate(d, reduction) for _ in range(n - 1))
        self.output = nn.ModuleList(OutputConv(d) for _ in range(n))

    def select(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Feature selection of level ``i``: ``Conv₁ₓ₁(gate(x))``."""
        return self.select_conv[i](check_inner_output(self.select_gate[i](x), x, self.owner, "gate"))

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = check_pyramid(x, self.channels, self.owner, False)
        n = len(self.channels)
        fused = self.select(n - 1, x[n - 1])
        outs = [self.output[n - 1](fused)]
        high = fused
        for i in range(n - 2, -1, -1):
            h = resize_to(self.upsample[i](high), x[i], "bilinear")  # 2H×2W → the level's size (odd sizes)
            fusion_gate: HSChannelGate = self.fusion_gate[i]  # type: ignore[assignment]
            weights = fusion_gate.gate_map(h)
            record(self, f"fusion_gate_{i}", weights)
            fused = weights * self.select(i, x[i]) + h
            outs.insert(0, self.output[i](fused))
            high = fused if self.cascade else h
        return outs
