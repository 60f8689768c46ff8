"""EfficientViT (Cai et al.) lightweight multi-scale linear attention (LiteMLA).

Paper: EfficientViT: Lightweight Multi-Scale Attention for High-Resolution Dense Prediction (Cai, Li, Hu, Gan, Han;
ICCV 2023), https://arxiv.org/abs/2205.14756.  Official code: mit-han-lab/efficientvit
(``efficientvit/models/nn/ops.py``, Apache-2.0); written from the paper and the reference, not copied
(docs/provenance/lite_mla.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn as nn

from ..functional.linear import relu_linear_attention
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    ConvBN,
    SizeBound,
    check_arg,
    check_nchw,
    odd_kernel,
    positive_int,
    positive_number,
)
from ..layers.checks import output_width
from ..registry import OUT_CHANNELS, register

__all__ = ["LiteMLA"]


@register(
    "lite_mla",
    family="self_attention",
    paper="EfficientViT: Lightweight Multi-Scale Attention for High-Resolution Dense Prediction (Cai et al.; ICCV 2023)",
    url="https://arxiv.org/abs/2205.14756",
    complexity="O(N)",
    summary="ReLU linear attention over 1×1 q/k/v and their multi-scale (depthwise 5×5 + grouped 1×1) tokens, in float32.",
    shape=OUT_CHANNELS,
    maps=(),
)
class LiteMLA(AttnModule):
    """EfficientViT's lightweight multi-scale linear attention; B×C×H×W → B×out_channels×H×W.

    ``qkv = Conv1×1(x)`` (C → 3·h·d, no bias); each scale s in ``kernels`` adds ``Conv1×1_groups=3h(DW_s(qkv))``;
    the (1 + len(kernels))·h heads attend with the ReLU kernel φ:
    ``out_i = Σ_j (φq_i·φk_j) v_j / (Σ_j φq_i·φk_j + ε)``, computed as ``(v φkᵀ) φq`` in O(N·d²), in float32
    (the sums over N overflow the precision of half types; ε = 1e-15 is 0 in float16); then ``Conv1×1 + BN``.
    The channels of each head are laid out ``[q (d) | k (d) | v (d)]`` as the official code.

    ε = 1e-15 is the official value (timm's ``LiteMLA`` defaults to 1e-5, which its models keep).  The
    official code switches to the explicit N×N form when N ≤ d (equal values, cheaper there); attnzoo always
    takes the linear form.  No attention map exists (the N×N matrix is never formed): nothing is captured.

    Args:
        channels: input channels C.
        out_channels: output channels (default C).
        heads: heads h (default ``C // dim_head``, the official ``heads_ratio = 1``).
        dim_head: per-head width d of q, k and v.
        kernels: kernel sizes of the multi-scale token aggregation (odd; ``()`` for single-scale attention).
        eps: ε of the denominator.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernels": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        heads: int | None = None,
        dim_head: int = 8,
        kernels: Sequence[int] = (5,),
        eps: float = 1e-15,
    ) -> None:
        super().__init__()
        owner = self.owner
        channels = positive_int(channels, owner, "channels")
        self.out_channels = output_width(channels, out_channels, owner)
        self.dim_head = positive_int(dim_head, owner, "dim_head")
        if heads is None:
            check_arg(
                channels >= dim_head, owner, "dim_head", f"at most channels ({channels}) when heads=None", dim_head
            )
            heads = channels // dim_head
        self.heads = positive_int(heads, owner, "heads")
        check_arg(isinstance(kernels, (tuple, list)), owner, "kernels", "a tuple of odd kernel sizes", kernels)
        self.kernels = tuple(odd_kernel(k, owner, "kernels") for k in kernels)
        self.eps = positive_number(eps, owner, "eps")
        self.channels = channels
        total = 3 * self.heads * self.dim_head
        self.qkv = nn.Conv2d(channels, total, 1, bias=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(total, total, k, padding=k // 2, groups=total, bias=False),
                nn.Conv2d(total, total, 1, groups=3 * self.heads, bias=False),
            )
            for k in self.kernels
        )
        self.proj = ConvBN(self.heads * self.dim_head * (1 + len(self.kernels)), self.out_channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, _, h, w = x.shape
        qkv = self.qkv(x)
        multi = torch.cat([qkv, *(op(qkv) for op in self.aggreg)], 1) if self.kernels else qkv
        d = self.dim_head
        q, k, v = multi.reshape(b, -1, 3 * d, h * w).split((d, d, d), dim=2)  # B×heads'×d×N each
        out = relu_linear_attention(q, k, v, self.eps)
        return self.proj(out.reshape(b, -1, h, w))
