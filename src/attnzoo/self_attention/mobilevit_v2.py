"""MobileViT v2: separable self-attention (linear in the number of patches).

Paper: Separable Self-attention for Mobile Vision Transformers (Mehta, Rastegari; TMLR 2023),
https://arxiv.org/abs/2206.02680.  Official code: apple/ml-cvnets (Apple sample-code licence): written from the
paper and the reference notes, not copied (docs/provenance/mobilevit_v2.md).
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

import torch
import torch.nn as nn

from ..functional.patches import fit_to_patches, from_patches, resize_back, to_patches
from ..layers import (
    DEPTH_BOUND,
    KERNEL_BOUND,
    RATIO_BOUND,
    AttnModule,
    ConvBN,
    SizeBound,
    check_nchw,
    positive_int,
    positive_number,
)
from ..layers.checks import output_width
from ..layers.norm import conv1x1
from ..registry import OUT_CHANNELS, register
from .mobilevit import PatchMlp, PreNormLayer, patch_transformer_args

__all__ = ["SeparableSelfAttention", "MobileViTV2Block"]


def make_divisible(v: float, divisor: int = 8) -> int:
    """The MobileNet width rule: the nearest multiple of ``divisor`` (at least ``divisor``), never 10 % below v."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SeparableSelfAttention(nn.Module):
    """MobileViT v2's separable self-attention on B×d×P×N (P in-patch positions, N patches); same shape out.

    ``[i, K, V] = Conv1×1(x)`` (1, d, d channels); for each in-patch position p the context vector
    ``c_p = Σ_n softmax_n(i_{p,n}) K_{p,n}`` (one d-vector: O(N·d)), ``y = W_o(ReLU(V) ⊙ c_p)``.
    """

    def __init__(self, dim: int, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.qkv_proj = nn.Conv2d(dim, 1 + 2 * dim, 1)
        self.attn_drop = nn.Dropout(attn_drop)
        self.out_proj = nn.Conv2d(dim, dim, 1)
        self.out_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i, k, v = self.qkv_proj(x).split((1, self.dim, self.dim), dim=1)
        scores = self.attn_drop(torch.softmax(i, dim=-1))  # B×1×P×N: softmax over the patches
        context = (k * scores).sum(-1, keepdim=True)  # B×d×P×1
        return self.out_drop(self.out_proj(torch.relu(v) * context))


class _LinearTransformerLayer(PreNormLayer):
    """Pre-norm layer on B×d×P×N: ``x + attn(GN₁(x))``, then ``x + FFN(GN₁(x))`` (GN₁: GroupNorm with one group)."""

    def __init__(self, dim: int, mlp_ratio: float, attn_drop: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.attn = SeparableSelfAttention(dim, attn_drop, dropout)
        self.norm2 = nn.GroupNorm(1, dim)
        self.mlp = PatchMlp(dim, int(dim * mlp_ratio), dropout, partial(conv1x1, bias=True))


@register(
    "mobilevit_v2",
    family="self_attention",
    paper="Separable Self-attention for Mobile Vision Transformers (Mehta, Rastegari; TMLR 2023)",
    url="https://arxiv.org/abs/2206.02680",
    complexity="O(N)",
    summary="MobileViT v2 block: depthwise conv, 1×1, 2×2 patches, separable self-attention layers (context vector per in-patch position), 1×1 ConvBN.",
    shape=OUT_CHANNELS,
    maps=(),
)
class MobileViTV2Block(AttnModule):
    """The MobileViT v2 block; B×C×H×W → B×out_channels×H×W.

    ``DW_k×k ConvBN SiLU → Conv1×1 (C → d)``; unfold into p×p patches (B×d×P×N); ``num_layers`` pre-norm layers of
    separable self-attention (``c_p = Σ_n softmax_n(i_{p,n}) K_{p,n}``, ``y = W_o(ReLU(V) ⊙ c_p)``) and a 1×1
    FFN (×``mlp_ratio``, SiLU), GroupNorm with one group before each and at the end; fold; ``Conv1×1 + BN``
    (d → out_channels).  Cost linear in N; no N×N matrix.

    Any H×W: a map whose sides are not multiples of p is resized (bilinear, ``align_corners=True``) up to the
    next multiples first, as the official code and timm do, and the output resized back to H×W (the official
    block keeps the enlarged size).  The state-dict keys are timm's ``MobileVitV2Block`` keys.

    Args:
        channels: input channels C.
        out_channels: output channels (default C).
        expansion: transformer width d as a ratio of C (``make_divisible(expansion·C, 8)``; the networks' 0.5).
        hidden_channels: explicit transformer width d (overrides ``expansion``).
        num_layers: transformer layers L.
        mlp_ratio: FFN hidden width as a ratio of d.
        patch_size: patch side p.
        kernel_size: the depthwise local conv (odd).
        attn_drop: dropout on the context scores.
        dropout: dropout after the attention projection and in the FFN.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "num_layers": SizeBound(DEPTH_BOUND, "layers"),
        "mlp_ratio": SizeBound(RATIO_BOUND, "MLP ratio"),
        "patch_size": SizeBound(KERNEL_BOUND, "patch side"),
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
        "expansion": SizeBound(RATIO_BOUND, "expansion ratio"),
    }

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        expansion: float = 0.5,
        hidden_channels: int | None = None,
        num_layers: int = 2,
        mlp_ratio: float = 2.0,
        patch_size: int = 2,
        kernel_size: int = 3,
        attn_drop: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels = positive_int(channels, owner, "channels")
        self.out_channels = output_width(channels, out_channels, owner)
        self.expansion = positive_number(expansion, owner, "expansion")
        if hidden_channels is None:
            hidden_channels = make_divisible(self.expansion * channels)
        self.hidden_channels = positive_int(hidden_channels, owner, "hidden_channels")
        args = patch_transformer_args(
            self.hidden_channels, num_layers, mlp_ratio, patch_size, kernel_size, attn_drop, dropout, owner
        )
        self.num_layers, self.mlp_ratio, self.patch_size, self.kernel_size, attn_drop, dropout = args
        d = self.hidden_channels
        self.conv_kxk = ConvBN(channels, channels, kernel_size, groups=channels)
        self.conv_1x1 = nn.Conv2d(channels, d, 1, bias=False)
        self.transformer = nn.Sequential(
            *(_LinearTransformerLayer(d, self.mlp_ratio, attn_drop, dropout) for _ in range(self.num_layers))
        )
        self.norm = nn.GroupNorm(1, d)
        self.conv_proj = ConvBN(d, self.out_channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        p = self.patch_size
        z = fit_to_patches(x, p, True)
        y = self.conv_1x1(self.conv_kxk(z))
        h, w = y.shape[-2], y.shape[-1]
        t = self.norm(self.transformer(to_patches(y, p)))
        return resize_back(self.conv_proj(from_patches(t, p, h, w)), x, True)
