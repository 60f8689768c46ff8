"""Residual self-attention block: x + Attention(Norm(x)) with global, spatial or spatial-reduction attention."""

from __future__ import annotations

import warnings

import torch
import torch.fx
import torch.nn as nn

from ..layers import (
    AttnModule,
    check_arg,
    check_heads,
    check_nchw,
    positive_int,
    renamed_args,
)
from ..registry import register

__all__ = ["SelfAttentionBlock"]

from ..layers.batchnorm import PooledBatchNorm2d
from .efficient_self_attention import EfficientSelfAttention
from .global_attention import GlobalAttention
from .spatial_self_attention import SpatialSelfAttention

_BLOCK_ARGS = {
    "standard": {"heads", "qkv_bias", "dropout"},
    "spatial": {"heads", "reduction", "dropout"},
    "efficient": {"heads", "sr_ratio", "sr_mode", "key_channels", "value_channels", "qkv_bias", "dropout"},
}


@register(
    "self_attention_block",
    family="self_attention",
    paper="Attention Is All You Need (Vaswani et al.; NeurIPS 2017) / PVT (Wang et al.; ICCV 2021) — the community SelfAttentionBlock",
    url="https://arxiv.org/abs/1706.03762",
    complexity="O(N^2)",
    summary="x + Attention(Norm(x)) with standard, spatial (reduced) or efficient (spatial-reduction) attention.",
)
class SelfAttentionBlock(AttnModule):
    """Residual self-attention block (the community ``SelfAttentionBlock``); B×C×H×W → B×C×H×W.

    ``y = x + A(N(x))`` with, by ``attn_type``:

    * ``"standard"``: N = LayerNorm over channels, A = multi-head attention over all positions with
      ``heads`` heads of width C/heads, q/k/v Linear (bias ``qkv_bias``, default False) and an output
      Linear — the community code's ``SelfAttention``; implemented as :class:`GlobalAttention` (whose ``norm`` is N).
    * ``"spatial"`` (default, as the community code): N = BatchNorm2d, A = :class:`SpatialSelfAttention`
      (``reduction`` 8, ``heads`` default 1).
    * ``"efficient"``: N = BatchNorm2d, A = :class:`EfficientSelfAttention` with the community code's widths
      (``key_channels`` = max(1, C // 8), ``value_channels`` = max(1, C // 2)), ``sr_mode`` default
      ``"avg"`` (the community code) and ``sr_ratio`` default 8 (the community code's default of 1 means no reduction at all).

    Arguments that the chosen attention does not use must stay ``None`` (a ``ValueError`` otherwise): the
    seed swallows ``**kwargs`` and silently ignores e.g. ``num_heads`` for the spatial variant.  Not zero
    initialised (neither is the community code), so the block is not the identity at init.

    Args:
        channels: C.
        attn_type: ``"standard"``, ``"spatial"`` or ``"efficient"`` (formerly ``attention``).
        heads: heads of the attention (standard: 8, spatial / efficient: 1); must divide the attention width.
        reduction: spatial only, width ratio of q/k/v (default 8; formerly ``reduction_ratio``).
        sr_ratio, sr_mode, key_channels, value_channels: efficient only (``sr_mode`` was ``reduction``).
        qkv_bias: standard (default False) and efficient (default True).
        dropout: attention-probability (and, for standard/efficient, output) dropout, default 0.

    Shapes: x B×C×H×W → B×C×H×W.  Captured maps: those of ``self.attention``.
    """

    @renamed_args(attention="attn_type", reduction_ratio="reduction")
    def __init__(
        self,
        channels: int,
        attn_type: str = "spatial",
        heads: int | None = None,
        reduction: int | None = None,
        sr_ratio: int | None = None,
        sr_mode: str | None = None,
        key_channels: int | None = None,
        value_channels: int | None = None,
        qkv_bias: bool | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        if isinstance(reduction, str):  # the 0.1.0 name of sr_mode (``reduction="avg"``)
            warnings.warn(
                f"{owner}: reduction={reduction!r} (a mode) is deprecated, use sr_mode",
                DeprecationWarning,
                stacklevel=3,
            )
            reduction, sr_mode = None, reduction
        attention = attn_type
        positive_int(channels, owner, "channels")
        check_arg(
            isinstance(attention, str) and attention in _BLOCK_ARGS,
            owner,
            "attn_type",
            "'standard', 'spatial' or 'efficient'",
            attention,
        )
        given = {
            "heads": heads,
            "reduction": reduction,
            "sr_ratio": sr_ratio,
            "sr_mode": sr_mode,
            "key_channels": key_channels,
            "value_channels": value_channels,
            "qkv_bias": qkv_bias,
        }
        for arg, value in given.items():
            check_arg(
                value is None or arg in _BLOCK_ARGS[attention],
                owner,
                arg,
                f"None with attn_type={attention!r} (it only applies to "
                f"{', '.join(a for a in _BLOCK_ARGS if arg in _BLOCK_ARGS[a])})",
                value,
            )
        self.channels, self.attention_type = channels, attention
        try:
            self._build(
                channels,
                attention,
                heads,
                reduction,
                sr_ratio,
                sr_mode,
                key_channels,
                value_channels,
                qkv_bias,
                dropout,
            )
        except (ValueError, TypeError) as err:  # name the block, keep the inner module's precise message
            raise type(err)(f"{owner}: {err}") from None

    def _build(
        self,
        channels: int,
        attention: str,
        heads: int | None,
        reduction: int | None,
        sr_ratio: int | None,
        sr_mode: str | None,
        key_channels: int | None,
        value_channels: int | None,
        qkv_bias: bool | None,
        dropout: float,
    ) -> None:
        if attention == "standard":
            h = 8 if heads is None else heads
            check_heads(h, channels, GlobalAttention.__name__)
            self.norm: nn.Module = nn.Identity()  # the LayerNorm is self.attention.norm
            self.attention: nn.Module = GlobalAttention(
                channels,
                heads=h,
                dim_head=channels // h,
                dropout=dropout,
                qkv_bias=bool(qkv_bias),
                project_out=True,
            )
        elif attention == "spatial":
            self.norm = PooledBatchNorm2d(channels)
            self.attention = SpatialSelfAttention(
                channels,
                heads=1 if heads is None else heads,
                reduction=8 if reduction is None else reduction,
                attn_drop=dropout,
            )
        else:
            self.norm = PooledBatchNorm2d(channels)
            self.attention = EfficientSelfAttention(
                channels,
                heads=1 if heads is None else heads,
                sr_ratio=8 if sr_ratio is None else sr_ratio,
                sr_mode="avg" if sr_mode is None else sr_mode,
                key_channels=max(1, channels // 8) if key_channels is None else key_channels,
                value_channels=max(1, channels // 2) if value_channels is None else value_channels,
                qkv_bias=True if qkv_bias is None else qkv_bias,
                attn_drop=dropout,
                proj_drop=dropout,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        return x + self.attention(self.norm(x))
