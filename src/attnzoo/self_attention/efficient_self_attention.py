"""Spatial-reduction attention: PVT (Wang et al.; ICCV 2021) / SegFormer (Xie et al.; NeurIPS 2021).

Paper: https://arxiv.org/abs/2102.12122
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.fx
import torch.nn as nn

from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    attention,
    avg_reduce,
    check_dropout,
    check_heads,
    check_nchw,
    init_weights,
    merge_heads,
    pad_to_multiple,
    positive_int,
    renamed_args,
    split_heads,
    to_map,
    to_tokens,
)
from ..layers.checks import check_choice, output_width
from ..registry import OUT_CHANNELS, register

__all__ = ["EfficientSelfAttention"]


def _fan_out(conv: nn.Conv2d) -> int:
    return conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels // conv.groups


@register(
    "efficient_self_attention",
    family="self_attention",
    paper="Pyramid Vision Transformer (Wang et al.; ICCV 2021) / SegFormer (Xie et al.; NeurIPS 2021)",
    url="https://arxiv.org/abs/2102.12122",
    complexity="O(N^2/R^2)",
    summary="Spatial-reduction attention: keys/values from the map reduced by sr_ratio (strided conv + LN, or avg pool).",
    test_kwargs={"heads": 2, "sr_ratio": 3},
    maps=("attn",),
    shape=OUT_CHANNELS,
)
class EfficientSelfAttention(AttnModule):
    """Spatial-reduction attention (PVT "SRA", SegFormer "efficient self-attention"); B×C×H×W → B×C_out×H×W.

    Queries come from every position, ``q = W_q x``; keys and values from the map reduced R = ``sr_ratio``
    times in each direction: ``x_r = LN(Conv_{R×R, stride R}(x))`` (``sr_mode="conv"``, official PVT and
    SegFormer) or ``x_r = AvgPool_R(x)`` (``sr_mode="avg"``, the community code's ``EfficientSelfAttention``), then
    ``k, v = W_kv x_r``; per head ``softmax(q kᵀ / √d_k) v`` and ``W_proj`` back to ``out_channels``.  Cost
    O(N · N/R²).  With R = 1 there is no reduction (and no conv or LN), exactly as PVT.  No residual inside.
    Initialisation as PVT: Linear trunc-normal(0.02) with zero bias, LayerNorm (1, 0), conv normal(0, √(2/fan_out)).

    Any H×W: PVT's strided conv drops the last H mod R rows (and fails below R); here the map is zero-padded at
    the bottom/right to a multiple of R first (``"conv"``), and partial windows are averaged over their real
    pixels only (``"avg"``), so every position is seen by some key and maps smaller than R give one key.  For
    sizes divisible by R the result equals PVT exactly.

    Differences from the community code: External-Attention's ``EMSA`` is ResT's variant (depthwise conv,
    conv across heads, InstanceNorm) and needs H, W at construction; the community code applies ``avg_pool2d`` with
    floor semantics, uses one head and 1×1 convs with bias.  Here heads are honoured and the attention is fused.

    Args:
        channels: input channels C.
        heads: number of heads; must divide key_channels and value_channels.
        sr_ratio: spatial reduction R of keys/values (PVT stage 1: 8).
        sr_mode: ``"conv"`` (strided conv + LayerNorm, PVT/SegFormer) or ``"avg"`` (average pooling); formerly ``reduction``.
        key_channels: width of q and k (default C, as PVT).
        value_channels: width of v (default C).
        out_channels: output channels (default C).
        qkv_bias: bias of the q and kv projections (PVT: True).
        attn_drop: dropout on the attention probabilities.
        proj_drop: dropout after the output projection.

    Shapes: x B×C×H×W → B×out_channels×H×W.  Captured map: ``"attn"`` B×heads×N×N_r, N_r = ⌈H/R⌉·⌈W/R⌉.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "sr_ratio": SizeBound(KERNEL_BOUND, "reduction kernel side (C²·r² weights)"),
    }

    @renamed_args(reduction="sr_mode")
    def __init__(
        self,
        channels: int,
        heads: int = 1,
        sr_ratio: int = 8,
        sr_mode: str = "conv",
        key_channels: int | None = None,
        value_channels: int | None = None,
        out_channels: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        out_channels = output_width(channels, out_channels, owner)
        positive_int(sr_ratio, owner, "sr_ratio")
        check_choice(sr_mode, ("conv", "avg"), owner, "sr_mode")
        key_channels = channels if key_channels is None else positive_int(key_channels, owner, "key_channels")
        value_channels = channels if value_channels is None else positive_int(value_channels, owner, "value_channels")
        check_heads(heads, key_channels, owner, "key_channels")
        check_heads(heads, value_channels, owner, "value_channels")
        self.channels, self.heads, self.sr_ratio, self.sr_mode = channels, heads, sr_ratio, sr_mode
        self.key_channels, self.value_channels, self.out_channels = key_channels, value_channels, out_channels
        self.attn_drop = check_dropout(attn_drop, owner, "attn_drop")
        self.scale = (key_channels // heads) ** -0.5
        self.q = nn.Linear(channels, key_channels, bias=qkv_bias)
        self.kv = nn.Linear(channels, key_channels + value_channels, bias=qkv_bias)
        self.proj = nn.Linear(value_channels, out_channels)
        self.proj_drop = nn.Dropout(check_dropout(proj_drop, owner, "proj_drop"))
        if sr_ratio > 1 and sr_mode == "conv":
            self.sr: nn.Module = nn.Conv2d(channels, channels, sr_ratio, stride=sr_ratio)
            self.norm: nn.Module = nn.LayerNorm(channels)
        else:
            self.sr = nn.Identity()
            self.norm = nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PVT's ``_init_weights``."""
        init_weights(
            self,
            {
                nn.Linear: lambda m: nn.init.trunc_normal_(m.weight, std=0.02),
                nn.LayerNorm: lambda m: nn.init.ones_(m.weight),
                nn.Conv2d: lambda m: nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / _fan_out(m))),
            },
        )

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The reduced map the keys and values come from: B×C×⌈H/R⌉×⌈W/R⌉ (x itself when R = 1)."""
        if self.sr_ratio == 1:
            return x
        if self.sr_mode == "avg":
            return avg_reduce(x, self.sr_ratio)
        return self.sr(pad_to_multiple(x, self.sr_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        q = split_heads(self.q(to_tokens(x)), self.heads)
        kv = self.kv(self.norm(to_tokens(self.reduce(x))))
        k, v = kv.split([self.key_channels, self.value_channels], dim=-1)
        k, v = split_heads(k, self.heads), split_heads(v, self.heads)
        o = attention(q, k, v, scale=self.scale, dropout_p=self.attn_drop if self.training else 0.0, module=self)
        return to_map(self.proj_drop(self.proj(merge_heads(o))), x)
