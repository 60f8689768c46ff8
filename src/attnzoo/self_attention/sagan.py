"""Self-Attention Generative Adversarial Networks (Zhang, Goodfellow, Metaxas, Odena; ICML 2019).  Paper: https://arxiv.org/abs/1805.08318"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn

from ..layers import (
    AttnModule,
    attention,
    check_arg,
    check_channels_rank,
    check_spatial,
    conv1x1,
    heads_to_map,
    hidden_width,
    map_to_heads,
    max_pool_ceil,
    width_or,
)
from ..registry import register

__all__ = ["SAGANAttention"]


@register(
    "sagan",
    family="self_attention",
    paper="Self-Attention Generative Adversarial Networks (Zhang, Goodfellow, Metaxas, Odena; ICML 2019)",
    url="https://arxiv.org/abs/1805.08318",
    complexity="O(N^2)",
    summary="SAGAN self-attention: C/8 query/key, softmax over positions, γ-scaled residual (γ=0 at init).",
    identity_at_init=True,
    maps=("attn",),
    dims=(1, 2, 3),
)
class SAGANAttention(AttnModule):
    """SAGAN self-attention (Zhang et al., ICML 2019); B×C×H×W → B×C×H×W (``dims=1``: B×C×L, ``dims=3``: B×C×D×H×W).

    ``q, k = W_q x, W_k x`` (C → C/8), ``v = W_v x`` (C → ``value_channels``, default C);
    ``o_i = Σ_j softmax_j(q_iᵀ k_j) v_j`` (no scaling, as the paper); optional output conv
    (value_channels → C); ``y = x + γ·o`` with γ = 0 at init (identity).

    Defaults are the widely used PyTorch form (``Self-Attention-GAN`` ``Self_Attn``: biases, values of width C,
    no pooling, no output conv).  ``value_channels=C//2, pool=True, out_conv=True, bias=False`` is the official
    TensorFlow block (``sn_non_local_block_sim``: keys and values 2×2 max-pooled after their convs, C/2
    values, an output conv); spectral normalisation is a training choice of the GAN and is left to the user
    (``torch.nn.utils.parametrizations.spectral_norm`` on the convs).  Convs are Xavier-uniform initialised
    as the official code.  The community versions return ``(out, attention)`` and build the N×N matrix; this
    returns the output only and runs the fused SDPA kernel (the map is available through
    ``capture_attention``).  Odd sizes are pooled with ``ceil_mode`` (nothing dropped).  In 1-D and 3-D the
    positions are all those of the signal or the volume and ``pool`` is 2 on every axis (an attnzoo extension:
    the paper is 2-D).

    Args:
        channels: input channels C.
        reduction: query/key width ``max(1, C // reduction)``.
        qk_channels: explicit query/key width.
        value_channels: value width (default C).
        pool: 2×2 max-pool keys and values (N/4 keys), as the official TF code.
        out_conv: 1×1 conv value_channels → C after the attention; default: only when value_channels ≠ C.
        bias: biases on the 1×1 convs.
        dims: spatial rank of the input (1, 2 or 3).

    Attention maps: ``"attn"``, B×1×N×N'.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 8,
        qk_channels: int | None = None,
        value_channels: int | None = None,
        pool: bool = False,
        out_conv: bool | None = None,
        bias: bool = True,
        *,
        dims: int = 2,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels, self.dims = check_channels_rank(channels, dims, owner)
        qk = hidden_width(channels, reduction, qk_channels, 0, owner, "qk_channels")
        dv = width_or(value_channels, channels, owner, "value_channels")
        out_conv = dv != channels if out_conv is None else bool(out_conv)
        check_arg(
            out_conv or dv == channels,
            owner,
            "value_channels (with out_conv=False)",
            f"equal to channels={channels}",
            dv,
        )
        self.pool, self.qk_channels, self.value_channels = bool(pool), qk, dv
        self.query = conv1x1(channels, qk, bias, dims=dims)
        self.key = conv1x1(channels, qk, bias, dims=dims)
        self.value = conv1x1(channels, dv, bias, dims=dims)
        self.out = conv1x1(dv, channels, bias, dims=dims) if out_conv else None
        for conv in (self.query, self.key, self.value, self.out):
            if conv is not None:
                nn.init.xavier_uniform_(conv.weight)
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        size = [x.shape[2 + i] for i in range(self.dims)]
        q, k, v = self.query(x), self.key(x), self.value(x)
        if self.pool:
            k, v = max_pool_ceil(k, (2,) * self.dims), max_pool_ceil(v, (2,) * self.dims)
        o = heads_to_map(attention(map_to_heads(q), map_to_heads(k), map_to_heads(v), scale=1.0, module=self), *size)
        if self.out is not None:
            o = self.out(o)
        return x + self.gamma * o
