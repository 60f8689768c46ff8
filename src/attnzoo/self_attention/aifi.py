"""RT-DETR's AIFI: a Transformer encoder layer on the flattened map with 2-D sin-cos positions on queries and keys.

Paper: DETRs Beat YOLOs on Real-time Object Detection (Zhao et al.; CVPR 2024), https://arxiv.org/abs/2304.08069.
Official code: lyuwenyu/RT-DETR (Apache-2.0).  Written from the paper (docs/provenance/aifi.md).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..functional.positional import SINCOS_ORDERS, sincos_2d_table
from ..layers import (
    AttnModule,
    attention,
    check_arg,
    check_choice,
    check_dropout,
    check_heads,
    check_nchw,
    merge_heads,
    positive_int,
    positive_number,
    split_heads,
    to_map,
    to_tokens,
)
from ..layers.hosts import Inner, build_inner, check_inner_output
from ..registry import register
from ..tracing import fx_leaf

__all__ = ["AIFI", "PositionalMultiheadAttention"]


@fx_leaf
def position_table(x: torch.Tensor, temperature: float, order: str) -> torch.Tensor:
    """The (H·W)×C sin-cos table of map ``x`` in its dtype and device."""
    return sincos_2d_table(x.shape[-2], x.shape[-1], x.shape[1], temperature, order, x.device, x.dtype)


class PositionalMultiheadAttention(AttnModule):
    """Multi-head attention with ``q = k = t + P`` and ``v = t`` (positions on queries and keys only), with
    ``nn.MultiheadAttention``'s packed parameters (``in_proj_weight``, ``in_proj_bias``, ``out_proj``).
    Captured map: ``"attn"`` B×heads×N×N."""

    maps = ("attn",)  # what it records (an inner block: not registered, so declared here)

    def __init__(self, channels: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.channels, self.heads, self.dropout = channels, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * channels))
        self.out_proj = nn.Linear(channels, channels)
        nn.init.xavier_uniform_(self.in_proj_weight)  # nn.MultiheadAttention's init
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, t: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        qk_in = t + pos
        q = split_heads(F.linear(qk_in, wq, bq), self.heads)
        k = split_heads(F.linear(qk_in, wk, bk), self.heads)
        v = split_heads(F.linear(t, wv, bv), self.heads)
        p = self.dropout if self.training else 0.0
        return self.out_proj(merge_heads(attention(q, k, v, dropout_p=p, module=self)))


@register(
    "aifi",
    family="self_attention",
    paper="DETRs Beat YOLOs on Real-time Object Detection (Zhao et al.; CVPR 2024)",
    url="https://arxiv.org/abs/2304.08069",
    complexity="O(N^2)",
    summary="RT-DETR's AIFI encoder layer on the flattened map: sin-cos positions on q and k, post-norm, GELU FFN; attn= pluggable.",
    test_kwargs={"heads": 2, "dim_feedforward": 32},
    maps=(),
)
class AIFI(AttnModule):
    """RT-DETR's attention-based intra-scale feature interaction; B×C×H×W → B×C×H×W.

    On the row-major tokens t (B×N×C) with the 2-D sin-cos table P (d = C/4 per part,
    :func:`attnzoo.functional.sincos_2d_table`): ``t = LN₁(t + MHA(q = k = t + P, v = t))``,
    ``t = LN₂(t + W₂ GELU(W₁ t))`` (post-norm), then back to the map.  Defaults as RT-DETR: 8 heads, FFN 1024,
    dropout 0, GELU.

    ``pos="xy"`` (default) gives token (y, x) the positions ``[sin xω, cos xω, sin yω, cos yω]``, correct for any
    H×W.  ``pos="rtdetr"`` reproduces the official RT-DETR grid for checkpoint parity (it enumerates positions
    column-major: garbled when H ≠ W, x and y halves swapped when H = W); ``pos="yx"`` is the correct grid with
    the y blocks first, what Ultralytics builds since 8.4 compute.  The table is computed for each input size
    (RT-DETR caches it for 640×640).

    ``attn`` replaces the multi-head attention by another token mixer applied to the map (the residual, norms
    and FFN stay; the positions belong to the default attention and are not passed on): a registered module
    name, an ``nn.Module`` or a factory ``C -> nn.Module``.  State-dict keys as Ultralytics' ``AIFI``
    (``ma.in_proj_weight`` …, ``fc1``, ``fc2``, ``norm1``, ``norm2``); the official RT-DETR names them
    ``self_attn``, ``linear1``, ``linear2``.

    Args:
        channels: C (a multiple of 4).
        heads: attention heads (must divide C).
        dim_feedforward: FFN hidden width.
        dropout: dropout on the attention probabilities and both residual branches and the FFN.
        act: FFN activation, ``"gelu"`` or ``"relu"``.
        pos: ``"xy"``, ``"yx"`` or ``"rtdetr"``.
        temperature: the sin-cos temperature T (ω_i = T^(−i/d)).
        attn: the token mixer (None: the positional multi-head attention).

    Captured map (default attention): ``"attn"`` B×heads×N×N under ``"ma"``.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        act: str = "gelu",
        pos: str = "xy",
        temperature: float = 10000.0,
        attn: Inner = None,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        check_arg(
            channels % 4 == 0, owner, "channels", "a multiple of 4 (the sin-cos table has C/4 per part)", channels
        )
        check_heads(heads, channels, owner, paren=True)
        positive_int(dim_feedforward, owner, "dim_feedforward")
        self.dropout = check_dropout(dropout, owner)
        self.act = check_choice(act, ("gelu", "relu"), owner, "act")
        self.pos = check_choice(pos, SINCOS_ORDERS, owner, "pos")
        self.temperature = positive_number(temperature, owner, "temperature")
        self.channels, self.heads, self.dim_feedforward = channels, heads, dim_feedforward
        self.ma = build_inner(
            attn, channels, owner, "attn", lambda: PositionalMultiheadAttention(channels, heads, dropout)
        )
        self.custom_attn = attn is not None
        self.fc1 = nn.Linear(channels, dim_feedforward)
        self.fc2 = nn.Linear(dim_feedforward, channels)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        t = to_tokens(x)
        if self.custom_attn:
            mixed = to_tokens(check_inner_output(self.ma(x), x, self.owner, "attn"))
        else:
            mixed = self.ma(t, position_table(x, self.temperature, self.pos))
        t = self.norm1(t + self.drop(mixed))
        ffn = self.fc2(self.drop(F.gelu(self.fc1(t)) if self.act == "gelu" else F.relu(self.fc1(t))))
        t = self.norm2(t + self.drop(ffn))
        return to_map(t, x)
