"""Spatial self-attention with reduced q/k/v width on feature maps (Transformer attention, https://arxiv.org/abs/1706.03762)."""

from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn

from ..layers import (
    AttnModule,
    attention,
    check_dropout,
    check_heads,
    check_nchw,
    merge_heads,
    positive_int,
    renamed_args,
    split_heads,
    to_map,
    to_tokens,
)
from ..layers.checks import output_width
from ..registry import OUT_CHANNELS, register

__all__ = ["SpatialSelfAttention"]


@register(
    "spatial_self_attention",
    family="self_attention",
    paper="Attention Is All You Need (Vaswani et al.; NeurIPS 2017), applied to feature maps (the community SpatialSelfAttention)",
    url="https://arxiv.org/abs/1706.03762",
    complexity="O(N^2)",
    summary="Self-attention over all positions with q/k/v reduced to C/r, multi-head, 1×1 output conv back to C.",
    maps=("attn",),
    shape=OUT_CHANNELS,
)
class SpatialSelfAttention(AttnModule):
    """Spatial self-attention with reduced width (the community ``SpatialSelfAttention``); B×C×H×W → B×C_out×H×W.

    ``q, k, v = W_{q,k,v} x`` (1×1, no bias) reduce C to ``C_r = max(1, C // reduction)``; the C_r
    channels are split into ``heads`` heads of width d = C_r / heads and every position attends to every
    position, ``softmax(q kᵀ / √d) v``; a 1×1 conv with bias maps C_r back to ``out_channels`` (default C).
    No residual inside (:class:`SelfAttentionBlock` adds it).  Kaiming-normal (fan-out) init and zero
    biases as the community code.

    Differences from the community code: the community code accepts ``num_heads`` but never splits heads (always one head with
    scale 1/√C_r); here ``heads`` is honoured (default 1 reproduces the community code's computation exactly) and must
    divide C_r.  Attention runs fused (no N×N matrix); the community code builds B×N×N.

    Args:
        channels: input channels C.
        out_channels: output channels (default C).
        heads: number of heads; must divide C_r.
        reduction: r in C_r = max(1, C // r) (formerly ``reduction_ratio``).
        attn_drop: dropout on the attention probabilities (default 0; formerly ``dropout``).

    Shapes: x B×C×H×W → B×out_channels×H×W.  Captured map: ``"attn"`` B×heads×N×N.
    """

    @renamed_args(reduction_ratio="reduction", dropout="attn_drop")
    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        heads: int = 1,
        reduction: int = 8,
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        out_channels = output_width(channels, out_channels, owner)
        positive_int(reduction, owner, "reduction")
        reduced = max(1, channels // reduction)
        check_heads(heads, reduced, owner, "channels // reduction")
        self.channels, self.out_channels, self.heads, self.reduced_channels = channels, out_channels, heads, reduced
        self.attn_drop = check_dropout(attn_drop, owner, "attn_drop")
        self.qkv = nn.Linear(channels, 3 * reduced, bias=False)  # the community code's q_conv, k_conv, v_conv stacked
        self.proj = nn.Linear(reduced, out_channels)  # the community code's out_conv
        for lin in (self.qkv, self.proj):
            nn.init.kaiming_normal_(lin.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        q, k, v = self.qkv(to_tokens(x)).chunk(3, dim=-1)
        q, k, v = split_heads(q, self.heads), split_heads(k, self.heads), split_heads(v, self.heads)
        o = attention(q, k, v, scale=None, dropout_p=self.attn_drop if self.training else 0.0, module=self)
        return to_map(self.proj(merge_heads(o)), x)
