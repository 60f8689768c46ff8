"""Residual self-attention block: x + Attention(Norm(x)) with global, spatial or spatial-reduction attention."""

from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn

from ..layers import (
    AttnModule,
    check_arg,
    check_heads,
    check_nchw,
    positive_int,
)
from ..registry import register

__all__ = ["SelfAttentionBlock"]

from .efficient_self_attention import EfficientSelfAttention
from .global_attention import GlobalAttention
from .spatial_self_attention import SpatialSelfAttention

_BLOCK_ARGS = {
    "standard": {"heads", "qkv_bias", "dropout"},
    "spatial": {"heads", "reduction_ratio", "dropout"},
    "efficient": {"heads", "sr_ratio", "reduction", "key_channels", "value_channels", "qkv_bias", "dropout"},
}


@register(
    "self_attention_block",
    family="self_attention",
    paper="Attention Is All You Need (Vaswani et al.; NeurIPS 2017) / PVT (Wang et al.; ICCV 2021) — seed 004 SelfAttentionBlock",
    url="https://arxiv.org/abs/1706.03762",
    complexity="O(N^2)",
    summary="x + Attention(Norm(x)) with standard, spatial (reduced) or efficient (spatial-reduction) attention.",
)
class SelfAttentionBlock(AttnModule):
    """Residual self-attention block (seed 004 ``SelfAttentionBlock``); B×C×H×W → B×C×H×W.

    ``y = x + A(N(x))`` with, by ``attention``:

    * ``"standard"``: N = LayerNorm over channels, A = multi-head attention over all positions with
      ``heads`` heads of width C/heads, q/k/v Linear (bias ``qkv_bias``, default False) and an output
      Linear — the seed's ``SelfAttention``; implemented as :class:`GlobalAttention` (whose ``norm`` is N).
    * ``"spatial"`` (default, as the seed): N = BatchNorm2d, A = :class:`SpatialSelfAttention`
      (``reduction_ratio`` 8, ``heads`` default 1).
    * ``"efficient"``: N = BatchNorm2d, A = :class:`EfficientSelfAttention` with the seed's widths
      (``key_channels`` = max(1, C // 8), ``value_channels`` = max(1, C // 2)), ``reduction`` default
      ``"avg"`` (the seed) and ``sr_ratio`` default 8 (the seed's default of 1 means no reduction at all).

    Arguments that the chosen attention does not use must stay ``None`` (a ``ValueError`` otherwise): the
    seed swallows ``**kwargs`` and silently ignores e.g. ``num_heads`` for the spatial variant.  Not zero
    initialised (neither is the seed), so the block is not the identity at init.

    Args:
        channels: C.
        attention: ``"standard"``, ``"spatial"`` or ``"efficient"``.
        heads: heads of the attention (standard: 8, spatial / efficient: 1); must divide the attention width.
        reduction_ratio: spatial only (default 8).
        sr_ratio, reduction, key_channels, value_channels: efficient only.
        qkv_bias: standard (default False) and efficient (default True).
        dropout: attention-probability (and, for standard/efficient, output) dropout, default 0.

    Shapes: x B×C×H×W → B×C×H×W.  Captured maps: those of ``self.attention``.
    """

    def __init__(
        self,
        channels: int,
        attention: str = "spatial",
        heads: int | None = None,
        reduction_ratio: int | None = None,
        sr_ratio: int | None = None,
        reduction: str | None = None,
        key_channels: int | None = None,
        value_channels: int | None = None,
        qkv_bias: bool | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        check_arg(isinstance(attention, str) and attention in _BLOCK_ARGS, owner, "attention", "'standard', 'spatial' or 'efficient'", attention)
        given = {
            "heads": heads, "reduction_ratio": reduction_ratio, "sr_ratio": sr_ratio, "reduction": reduction,
            "key_channels": key_channels, "value_channels": value_channels, "qkv_bias": qkv_bias,
        }
        for arg, value in given.items():
            check_arg(value is None or arg in _BLOCK_ARGS[attention], owner, arg,
                      f"None with attention={attention!r} (it only applies to "
                      f"{', '.join(a for a in _BLOCK_ARGS if arg in _BLOCK_ARGS[a])})", value)
        self.channels, self.attention_type = channels, attention
        try:
            self._build(channels, attention, heads, reduction_ratio, sr_ratio, reduction, key_channels,
                        value_channels, qkv_bias, dropout)
        except (ValueError, TypeError) as err:  # name the block, keep the inner module's precise message
            raise type(err)(f"{owner}: {err}") from None

    def _build(self, channels: int, attention: str, heads: int | None, reduction_ratio: int | None,
               sr_ratio: int | None, reduction: str | None, key_channels: int | None,
               value_channels: int | None, qkv_bias: bool | None, dropout: float) -> None:
        if attention == "standard":
            h = 8 if heads is None else heads
            check_heads(h, channels, "GlobalAttention", "channels")
            self.norm: nn.Module = nn.Identity()  # the LayerNorm is self.attention.norm
            self.attention: nn.Module = GlobalAttention(
                channels, heads=h, dim_head=channels // h, dropout=dropout,
                qkv_bias=bool(qkv_bias), project_out=True,
            )
        elif attention == "spatial":
            self.norm = nn.BatchNorm2d(channels)
            self.attention = SpatialSelfAttention(
                channels, heads=1 if heads is None else heads,
                reduction_ratio=8 if reduction_ratio is None else reduction_ratio, dropout=dropout,
            )
        else:
            self.norm = nn.BatchNorm2d(channels)
            self.attention = EfficientSelfAttention(
                channels, heads=1 if heads is None else heads,
                sr_ratio=8 if sr_ratio is None else sr_ratio,
                reduction="avg" if reduction is None else reduction,
                key_channels=max(1, channels // 8) if key_channels is None else key_channels,
                value_channels=max(1, channels // 2) if value_channels is None else value_channels,
                qkv_bias=True if qkv_bias is None else qkv_bias, attn_drop=dropout, proj_drop=dropout,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        return x + self.attention(self.norm(x))
