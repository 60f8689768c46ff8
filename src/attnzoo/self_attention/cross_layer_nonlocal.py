"""Cross-layer non-local (CNL) attention: queries from one map, keys and values from other layers' maps."""

from __future__ import annotations

from typing import Sequence, cast

import torch
import torch.fx
import torch.nn as nn

from ..layers import (
    AttnModule,
    attention,
    check_arg,
    check_context,
    check_nchw,
    conv1x1,
    heads_to_map,
    hidden_width,
    map_to_heads,
    positive_int,
    renamed_args,
    zero_bn,
)
from ..registry import register

__all__ = ["CrossLayerNonLocal"]


@register(
    "cross_layer_nonlocal",
    family="self_attention",
    paper="Associating Multi-Scale Receptive Fields for Fine-grained Recognition (Ye et al.; ICIP 2020)",
    url="https://github.com/FouriYe/CNL-ICIP2020",
    layout="pair",
    complexity="O(N^2)",
    summary="Cross-layer non-local: queries from one map, keys/values from one or several other maps; BN zero-init.",
    identity_at_init=True,
    maps=("attn*",),
)
class CrossLayerNonLocal(AttnModule):
    """Cross-layer non-local block, CNL (Ye et al., ICIP 2020); ``forward(query_map, context)`` → query-shaped.

    ``query_map``: B×C×H×W.  ``context``: one map B×C_m×H_m×W_m or a list of maps, each with its own channels
    (``context_channels``) and resolution.  As the official ``CNL_5``: ``t = θ(query)`` (1×1 conv C → planes,
    shared), per context map ``p_m, g_m = Conv1×1(C_m → planes)`` (no bias),
    ``A_m = softmax(tᵀ p_m / √planes)`` (N × N_m), ``y_m = BN_m(W_z (A_m g_m))`` with the W_z conv
    (planes → C) shared and a BN per context map, ``out = query + Σ_m y_m``.  Convs ~ N(0, 0.01), BN weight
    and bias 0: the identity at init.  Differences from the official code: the attended values are transposed
    back to B×planes×H×W (the official ``view`` reinterprets the N×planes result as planes×N, scrambling
    positions and channels), the residual is inside the block, and the attention runs the fused SDPA kernel.

    Args:
        channels: query channels C.
        context_channels: channels of the context map (an int, default C), or a list with one entry per
            context map (then ``context`` must be a list of that length).
        inner_channels: inner width (default ``max(1, C // 8)`` as the official 2048 → 256; formerly ``planes``).
        use_scale: 1/√planes on the logits (official).

    Attention maps: ``"attn"`` (one context map) or ``"attn0"``, ``"attn1"``, ... : B×1×N×N_m.
    """

    @renamed_args(planes="inner_channels")
    def __init__(
        self,
        channels: int,
        context_channels: int | Sequence[int] | None = None,
        inner_channels: int | None = None,
        use_scale: bool = True,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        if context_channels is None or isinstance(context_channels, int):
            ctx = [channels if context_channels is None else context_channels]
            self.single = True
        else:
            check_arg(
                isinstance(context_channels, Sequence) and len(context_channels) >= 1,
                owner,
                "context_channels",
                "an int or a non-empty list of ints",
                context_channels,
            )
            ctx = list(context_channels)
            self.single = False
        for c in ctx:
            positive_int(c, owner, "context_channels")
        planes = hidden_width(channels, 8, inner_channels, 0, owner, "inner_channels")
        self.channels, self.context_channels, self.planes = channels, tuple(ctx), planes
        self.scale = planes**-0.5 if use_scale else 1.0
        self.theta = conv1x1(channels, planes, False, 0.01)
        self.phi = nn.ModuleList(conv1x1(c, planes, False, 0.01) for c in ctx)
        self.g = nn.ModuleList(conv1x1(c, planes, False, 0.01) for c in ctx)
        self.out = conv1x1(planes, channels, False, 0.01)
        self.bn = nn.ModuleList(zero_bn(channels) for _ in ctx)

    def forward(self, query_map: torch.Tensor, context: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        owner = self.owner
        query_map = check_nchw(query_map, self.channels, owner)
        contexts = list(context) if isinstance(context, (list, tuple)) else [context]
        if len(contexts) != len(self.context_channels):
            raise ValueError(
                f"{owner}: expected {len(self.context_channels)} context map(s) with channels {list(self.context_channels)}, got {len(contexts)}"
            )
        h, w = query_map.shape[2], query_map.shape[3]
        t = map_to_heads(self.theta(query_map))
        out = query_map
        for m, (ctx, c_m, phi, g, bn) in enumerate(zip(contexts, self.context_channels, self.phi, self.g, self.bn)):
            ctx = check_context(cast(torch.Tensor, ctx), query_map, c_m, owner)
            key = "attn" if len(self.context_channels) == 1 else f"attn{m}"
            y = heads_to_map(
                attention(t, map_to_heads(phi(ctx)), map_to_heads(g(ctx)), scale=self.scale, module=self, key=key), h, w
            )
            out = out + bn(self.out(y))
        return out
