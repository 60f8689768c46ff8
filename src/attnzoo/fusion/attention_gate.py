"""Attention U-Net's additive attention gate (Oktay, Schlemper, Le Folgoc, Lee, Heinrich, Misawa, Mori, McDonagh,
Hammerla, Kainz, Glocker, Rueckert; MIDL 2018).  Paper: https://arxiv.org/abs/1804.03999

Official code: ozan-oktay/Attention-Gated-Networks (MIT), ``models/layers/grid_attention_layer.py``
(``_GridAttentionBlockND``, mode ``"concatenation"``); MONAI's ``AttentionBlock`` is the same-size variant.  Both
re-written here (docs/provenance/attention_gate.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..layers import AttnModule, check_arg, check_choice, check_context, check_nchw, positive_int
from ..layers.batchnorm import PooledBatchNorm2d
from ..layers.checks import width_or
from ..layers.pooling import pad_to_multiple
from ..layers.pyramid import resize_to
from ..registry import register

__all__ = ["AttentionGate"]

_VARIANTS = ("paper", "monai")


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """MONAI's ``Sequential(Conv 1×1 with bias, BatchNorm)``."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1), PooledBatchNorm2d(c_out))


@register(
    "attention_gate",
    family="fusion",
    paper="Attention U-Net: Learning Where to Look for the Pancreas (Oktay et al.; MIDL 2018)",
    url="https://arxiv.org/abs/1804.03999",
    layout="pair",
    complexity="O(N)",
    summary="Attention U-Net additive gate: α = σ(ψ(ReLU(W_x x + W_g g))) from the skip map x and the coarser "
    "gating map g, resized to x; out = x·α (optionally the official 1×1 conv + BN after it).",
    maps=("gate",),
)
class AttentionGate(AttnModule):
    """Attention U-Net's additive attention gate; ``forward(x, context)`` → B×C×H×W.

    ``α = σ(ψ(ReLU(θ(x) + φ(g))))`` resized to x, ``out = x ⊙ α`` (the paper's equation): x is the skip
    connection's map (C channels), g the gating signal from the coarser decoder level (``context_channels``,
    usually at ⌈H/2⌉×⌈W/2⌉, any size accepted).  ``variant="paper"`` (the official ``_GridAttentionBlockND``,
    mode ``"concatenation"``): θ is a 2×2 stride-2 conv without bias (``subsample``; 1×1 when
    ``subsample=False``), φ and ψ are 1×1 convs with bias, φ(g) is bilinearly resized to θ(x)'s size and α
    bilinearly upsampled to x's (``align_corners=False``); convs Kaiming-initialised as the official code.
    ``out_conv=True`` adds the official output transform W (1×1 conv + BN) after the product.
    ``variant="monai"`` (MONAI's ``AttentionBlock``): θ, φ and ψ are 1×1 convs with bias, each followed by a
    BatchNorm, at x's resolution (g resized to x); no subsampling.

    Odd sizes: the official θ (kernel = stride = 2, no padding) drops the last row / column of an odd map and
    gives nothing on a 1-pixel map; here x is zero-padded at the bottom / right to even first, so θ(x) is at
    ⌈H/2⌉×⌈W/2⌉ (the context's size in the ``pair`` layout).  Even sizes are the official computation.

    Args:
        channels: C of x.
        context_channels: channels of the gating map g (default C).
        inner_channels: width of θ(x) and φ(g) (default max(C // 2, 1), as both the official code and MONAI).
        subsample: compute the gate at half resolution (the paper; default True for ``"paper"``, must be
            False for ``"monai"``).
        out_conv: the official output transform W (1×1 conv + BN) after ``x ⊙ α``.
        variant: ``"paper"`` or ``"monai"``.

    Captured map: ``"gate"`` B×1×H×W (α at x's size).
    """

    def __init__(
        self,
        channels: int,
        context_channels: int | None = None,
        inner_channels: int | None = None,
        subsample: bool | None = None,
        out_conv: bool = False,
        variant: str = "paper",
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels = positive_int(channels, owner, "channels")
        self.context_channels = width_or(context_channels, channels, owner, "context_channels")
        self.inner_channels = width_or(inner_channels, max(channels // 2, 1), owner, "inner_channels")
        self.variant = check_choice(variant, _VARIANTS, owner, "variant")
        monai = variant == "monai"
        subsample = not monai if subsample is None else subsample
        check_arg(isinstance(subsample, bool), owner, "subsample", "a bool or None", subsample)
        check_arg(not (monai and subsample), owner, "subsample", "False or None with variant='monai'", subsample)
        check_arg(isinstance(out_conv, bool), owner, "out_conv", "a bool", out_conv)
        self.subsample, self.out_conv = subsample, out_conv
        c, ci = self.channels, self.inner_channels
        self.theta: nn.Module
        self.phi: nn.Module
        self.psi: nn.Module
        if monai:
            self.theta, self.phi, self.psi = _conv_bn(c, ci), _conv_bn(self.context_channels, ci), _conv_bn(ci, 1)
        else:
            k = 2 if subsample else 1
            self.theta = nn.Conv2d(c, ci, k, stride=k, bias=False)
            self.phi = nn.Conv2d(self.context_channels, ci, 1)
            self.psi = nn.Conv2d(ci, 1, 1)
            for m in (self.theta, self.phi, self.psi):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
        self.W: nn.Sequential | None = None
        if out_conv:
            proj = nn.Conv2d(c, c, 1)
            nn.init.kaiming_normal_(proj.weight, a=0, mode="fan_in")
            self.W = nn.Sequential(proj, PooledBatchNorm2d(c))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        g = check_context(context, x, self.context_channels, self.owner)
        t = self.theta(pad_to_multiple(x, 2) if self.subsample else x)
        f = F.relu(t + resize_to(self.phi(g), t, "bilinear"))
        alpha = resize_to(torch.sigmoid(self.psi(f)), x, "bilinear")
        record(self, "gate", alpha)
        y = x * alpha
        return y if self.W is None else self.W(y)
