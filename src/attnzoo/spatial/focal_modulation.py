"""FocalNet's focal modulation: hierarchical depthwise contexts, gated aggregation, element-wise modulation.

Paper: Focal Modulation Networks (Yang, Li, Dai, Yuan, Gao; NeurIPS 2022), https://arxiv.org/abs/2203.11926.
Official code: microsoft/FocalNet (MIT); written from the paper, the official code and timm's port
(Apache-2.0), not copied (docs/provenance/focal_modulation.md).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from ..capture import record
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_dropout,
    check_nchw,
    non_negative_int,
    odd_kernel,
    positive_int,
)
from ..registry import register

__all__ = ["FocalModulation"]


@register(
    "focal_modulation",
    family="spatial",
    paper="Focal Modulation Networks (Yang, Li, Dai, Yuan, Gao; NeurIPS 2022)",
    url="https://arxiv.org/abs/2203.11926",
    complexity="O(N)",
    summary="q ⊙ h(Σ_l g_l ⊙ z_l): L depthwise GELU contexts of growing kernels plus a global one, gated per pixel, modulate q.",
    maps=("modulator",),
)
class FocalModulation(AttnModule):
    """FocalNet's focal modulation; B×C×H×W → B×C×H×W.

    ``[q, z⁰, g] = f(x)`` (1×1 conv to C, C, L+1 channels); ``z^l = GELU(DW_{k_l}(z^{l−1}))`` with
    ``k_l = focal_factor·(l−1) + focal_window`` (3, 5 by default); ``z^{L+1} = GELU(GAP(z^L))``;
    ``M = h(Σ_{l=1}^{L+1} g_l ⊙ z^l)`` (÷(L+1) with ``normalize_modulator``); ``out = proj(q ⊙ M)`` (a LayerNorm
    over the channels before ``proj`` with ``use_post_norm``).  The convolutions are 1×1 convs on the map (the
    official f and proj are Linear layers on channels-last tokens: the same weights, reshaped).

    The official forward stores the gates and the modulator on the module (``self.gates``, ``self.modulator``);
    this forward keeps no state: the modulator is recorded through ``attnzoo.capture_attention`` instead.

    Args:
        channels: input channels C.
        focal_level: number of depthwise context levels L.
        focal_window: kernel of the first level (odd).
        focal_factor: kernel growth per level (even, so every kernel stays odd).
        bias: bias in f and h.
        use_post_norm: LayerNorm over the channels of ``q ⊙ M`` (FocalNet's ``use_postln_in_modulation``).
        normalize_modulator: divide the aggregated context by L + 1.
        proj_drop: dropout after ``proj``.

    Captured map: ``"modulator"`` B×C×H×W (M).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "focal_level": SizeBound(16, "focal levels, one depthwise conv each"),
        "focal_window": SizeBound(KERNEL_BOUND, "kernel side"),
        "focal_factor": SizeBound(16, "kernel growth per level"),
    }

    def __init__(
        self,
        channels: int,
        focal_level: int = 2,
        focal_window: int = 3,
        focal_factor: int = 2,
        bias: bool = True,
        use_post_norm: bool = False,
        normalize_modulator: bool = False,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels = c = positive_int(channels, owner, "channels")
        self.focal_level = positive_int(focal_level, owner, "focal_level")
        self.focal_window = odd_kernel(focal_window, owner, "focal_window")
        self.focal_factor = non_negative_int(focal_factor, owner, "focal_factor")
        check_arg(focal_factor % 2 == 0, owner, "focal_factor", "an even integer (odd kernels)", focal_factor)
        for flag, value in (
            ("bias", bias),
            ("use_post_norm", use_post_norm),
            ("normalize_modulator", normalize_modulator),
        ):
            check_arg(isinstance(value, bool), owner, flag, "a bool", value)
        self.use_post_norm, self.normalize_modulator = use_post_norm, normalize_modulator
        self.kernel_sizes = tuple(self.focal_factor * i + self.focal_window for i in range(self.focal_level))
        self.f = nn.Conv2d(c, 2 * c + focal_level + 1, 1, bias=bias)
        self.h = nn.Conv2d(c, c, 1, bias=bias)
        self.act = nn.GELU()
        self.proj = nn.Conv2d(c, c, 1)
        self.proj_drop = nn.Dropout(check_dropout(proj_drop, owner, "proj_drop"))
        self.focal_layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False), nn.GELU())
            for k in self.kernel_sizes
        )
        self.norm = nn.LayerNorm(c) if use_post_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        c, levels = self.channels, self.focal_level
        q, ctx, gates = self.f(x).split((c, c, levels + 1), dim=1)
        ctx = self.focal_layers[0](ctx)
        ctx_all = ctx * gates[:, :1]
        for i in range(1, levels):
            ctx = self.focal_layers[i](ctx)
            ctx_all = ctx_all + ctx * gates[:, i : i + 1]
        ctx_all = ctx_all + self.act(ctx.mean((2, 3), keepdim=True)) * gates[:, levels:]
        if self.normalize_modulator:
            ctx_all = ctx_all / (levels + 1)
        modulator = self.h(ctx_all)
        record(self, "modulator", modulator)
        out = q * modulator
        if self.norm is not None:
            out = self.norm(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.proj_drop(self.proj(out))
