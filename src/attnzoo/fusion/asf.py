"""ASF-YOLO's attentional scale sequence fusion: SSFF, TFE and CPAM (Kang, Ting, Ting, Phan; IVC 2024).

Paper: ASF-YOLO: A Novel YOLO Model with Attentional Scale Sequence Fusion for Cell Instance Segmentation, Image and
Vision Computing 147 (2024) 105057, https://arxiv.org/abs/2312.06458.  Written from the paper's equations; the
official code (mkang315/ASF-YOLO) is AGPL-3.0 and was not read or copied (docs/provenance/ssff.md).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..capture import record
from ..channel.eca import EfficientChannelAttention
from ..functional.gating import SPATIAL_MEAN_FORM
from ..functional.pooling import EXACT_POOL_FORM, adaptive_pool2d
from ..layers import AttnModule, ConvBN, check_arg, check_nchw, check_pyramid, fx_leaf, hidden_width, traced_size
from ..layers.pyramid import check_level_channels, resize_to
from ..registry import register
from .aff import check_same_pair

__all__ = ["ScaleSequenceFusion", "TripleFeatureEncoding", "ChannelPositionAttention", "asf_eca_kernel_size"]

_PAPER = "ASF-YOLO: A Novel YOLO Model with Attentional Scale Sequence Fusion (Kang, Ting, Ting, Phan; IVC 2024)"
_URL = "https://arxiv.org/abs/2312.06458"


@fx_leaf
def max_plus_avg_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """TFE's down-sampling: exact adaptive max pool + exact adaptive avg pool of ``x`` to ``ref``'s size."""
    size = traced_size(ref)
    return adaptive_pool2d(x, size, "max") + adaptive_pool2d(x, size, "avg")


def _one_map(module: Any, levels: Sequence[torch.Tensor]) -> tuple[Any, ...]:
    """One map of ``module.out_channels`` at the size of level ``module.level``."""
    t = levels[module.level]
    return (t.shape[0], module.out_channels, t.shape[2], t.shape[3])


@register(
    "ssff",
    family="fusion",
    paper=_PAPER,
    url=_URL,
    layout="pyramid",
    complexity="O(N)",
    summary="Scale sequence fusion: P4, P5 to P3's width and size, one shared 1×1 conv + BN + LeakyReLU on the "
    "three, max over the scale axis (the paper's Conv3d + MaxPool3d written in 2-D).",
    output_shape=_one_map,
)
class ScaleSequenceFusion(AttnModule):
    """ASF-YOLO's scale sequence feature fusion (SSFF); ``[P3, P4, P5]`` → one B×C₀×H₀×W₀ map.

    ``u₃ = P3``, ``u₄ = nearest(ConvBN₁ₓ₁(P4) → C₀, size of P3)``, ``u₅`` likewise (ConvBN = Conv + BN + SiLU);
    ``out = max_s LeakyReLU₀.₁(BN(W u_s))`` with one 1×1 conv ``W`` (bias, as ``Conv3d``) and one BatchNorm
    shared by the three scales.  The paper stacks the ``u_s`` on a depth axis and applies
    ``Conv3d(1×1×1) → BatchNorm3d → LeakyReLU → MaxPool3d((3, 1, 1))``; this is the same computation in 2-D (the
    three maps side by side along the width, so the BatchNorm's batch statistics pool the three scales as
    ``BatchNorm3d`` does, in training too).  No Conv3d / 5-D tensor: it exports to every runtime.  The input
    widths are free (the official code hard-codes P4 = 512 and P5 = 1024 channels).

    The paper fuses three levels; any number L ≥ 2 works the same way (the scale sequence has depth L and the
    maximum runs over all of it: a ``MaxPool3d((L, 1, 1))``).

    Args:
        channels: ``[C₀, C₁, C₂]``, the widths of P3, P4, P5 (finest first); the output has C₀.

    ``conv3d_weight()`` gives the ``Conv3d`` weight of the paper's form (for loading or comparing a checkpoint).
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.channels = check_level_channels(channels, self.owner)
        c = self.out_channels = self.channels[0]
        self.level = 0
        self.reduce = nn.ModuleList([ConvBN(ci, c) for ci in self.channels[1:]])
        self.conv = nn.Conv2d(c, c, 1)
        self.bn = nn.BatchNorm2d(c)
        self.act = nn.LeakyReLU(0.1)

    def conv3d_weight(self) -> torch.Tensor:
        """The weight of the equivalent ``Conv3d(C₀, C₀, 1)``: C₀×C₀×1×1×1."""
        return self.conv.weight.detach()[:, :, None]

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        x = check_pyramid(x, self.channels, self.owner, False)
        n = len(self.channels)
        p3 = x[0]
        u = [p3] + [resize_to(self.reduce[i - 1](x[i]), p3) for i in range(1, n)]
        y = self.act(self.bn(self.conv(torch.cat(u, dim=-1))))  # B×C₀×H₀×(L·W₀): the scales side by side
        parts = torch.chunk(y, n, dim=-1)
        out = parts[0]
        for i in range(1, n):
            out = torch.maximum(out, parts[i])
        return out


@register(
    "tfe",
    family="fusion",
    paper=_PAPER,
    url=_URL,
    layout="pyramid",
    complexity="O(N)",
    summary="Triple feature encoding: the large level max+avg pooled exactly to the middle size, the small level "
    "nearest-upsampled, concatenated with the middle level.",
    output_shape=_one_map,
    forms=(EXACT_POOL_FORM,),
)
class TripleFeatureEncoding(AttnModule):
    """ASF-YOLO's triple feature encoding (TFE); ``[l, m, s]`` → one B×(C_l + C_m + C_s)×H_m×W_m map.

    ``cat(adaptive_max(l → size of m) + adaptive_avg(l → size of m), m, nearest(s → size of m))``, the
    official code's form (the paper's per-branch convolutions are commented out there; put a conv in front to
    equalise widths, the concatenation is 3C when the three widths are C).  The pooling has PyTorch's exact
    adaptive bins at every size, also in the exported graph (:func:`attnzoo.functional.adaptive_pool2d`): the
    copies' ``adaptive_max_pool2d`` fails the ONNX export when the middle size does not divide the large one.

    The paper encodes three levels at the middle one; with other pyramids ``level`` picks the output level, the
    finer levels are max+avg pooled to it and the coarser ones nearest-upsampled (concatenated finest first).

    Args:
        channels: ``[C_l, C_m, C_s]``, finest first (any number of levels ≥ 2).
        level: index of the output level (1, the middle of three).
    """

    def __init__(self, channels: Sequence[int], level: int = 1) -> None:
        super().__init__()
        self.channels = check_level_channels(channels, self.owner)
        ok = isinstance(level, int) and not isinstance(level, bool) and 0 <= level < len(self.channels)
        check_arg(ok, self.owner, "level", f"an index into the {len(self.channels)} levels", level)
        self.level = level
        self.out_channels = sum(self.channels)

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        x = check_pyramid(x, self.channels, self.owner, False)
        ref = x[self.level]
        parts = [max_plus_avg_to(x[i], ref) for i in range(self.level)]
        parts.append(ref)
        parts.extend(resize_to(x[i], ref) for i in range(self.level + 1, len(self.channels)))
        return torch.cat(parts, dim=1)


def asf_eca_kernel_size(channels: int) -> int:
    """CPAM's ECA kernel: ``t = int((log2 C + 1) / 2)``, the next odd number (no minimum of 3: C < 8 gives 1)."""
    t = int((math.log2(channels) + 1) / 2)
    return t if t % 2 else t + 1


@register(
    "cpam",
    family="fusion",
    paper=_PAPER,
    url=_URL,
    layout="pair_same",
    complexity="O(N)",
    summary="Channel and position attention: ECA on the first map, add the second, then a coordinate-style "
    "gate (row and column means → shared 1×1 → two sigmoid gates).",
    maps=("gate_h", "gate_w"),
    forms=(SPATIAL_MEAN_FORM,),
)
class ChannelPositionAttention(AttnModule):
    """ASF-YOLO's channel and position attention mechanism (CPAM); ``forward(x1, x2)``, both B×C×H×W → B×C×H×W.

    ``x = E(x1) + x2`` with ``E`` an ECA gate (``x1 ⊙ σ(Conv1d_k(GAP(x1)))``, ``k`` from
    :func:`asf_eca_kernel_size`, no bias); then the position attention
    ``s = ReLU(BN(W₁ [mean_W(x); mean_H(x)]))`` (one 1×1 conv C → C/r without bias over the concatenated row
    and column means), split back, ``y = x ⊙ σ(W_h s_h) ⊙ σ(W_w s_w)`` (1×1 convs C/r → C without bias).
    In the paper x1 is the TFE output and x2 the SSFF output (both at P3 after the neck's convs).

    Args:
        channels: C of both maps.
        reduction: r of the position attention (16, hidden width at least 1).

    Captured maps: ``"gate_h"`` B×C×H×1 and ``"gate_w"`` B×C×1×W (the ECA gate under ``"eca"``).
    """

    def __init__(self, channels: int, reduction: float = 16) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, None, 1, self.owner)
        self.channels, self.reduction = channels, reduction
        self.eca = EfficientChannelAttention(channels, kernel_size=asf_eca_kernel_size(channels))
        self.conv1 = ConvBN(channels, hidden, act="relu")
        self.conv_h = nn.Conv2d(hidden, channels, 1, bias=False)
        self.conv_w = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = check_nchw(x1, self.channels, self.owner)
        x2 = check_same_pair(x1, x2, self.owner)
        x = self.eca(x1) + x2
        h, w = x.shape[2], x.shape[3]
        s = self.conv1(torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)], dim=2))
        s_h, s_w = torch.split(s, [h, w], dim=2)
        gate_h = torch.sigmoid(self.conv_h(s_h))
        gate_w = torch.sigmoid(self.conv_w(s_w.transpose(2, 3)))
        record(self, "gate_h", gate_h)
        record(self, "gate_w", gate_w)
        return x * gate_h * gate_w
