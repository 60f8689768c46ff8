"""Global multi-head self-attention on a feature map (ViT / Transformer attention over all H·W positions).

Papers: https://arxiv.org/abs/2010.11929, https://arxiv.org/abs/1706.03762
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn

from ..layers import (
    AttnModule,
    attention,
    check_arg,
    check_channels_rank,
    check_dropout,
    check_spatial,
    merge_heads,
    positive_int,
    split_heads,
    to_map,
    to_tokens,
)
from ..registry import register

__all__ = ["GlobalAttention"]


@register(
    "global_attention",
    family="self_attention",
    paper="An Image is Worth 16x16 Words (Dosovitskiy et al.; ICLR 2021) / Attention Is All You Need (Vaswani et al.; NeurIPS 2017)",
    url="https://arxiv.org/abs/2010.11929",
    complexity="O(N^2)",
    summary="Pre-LayerNorm multi-head self-attention over all H·W positions of a feature map (the community AttentionBlock).",
    test_kwargs={"heads": 2, "dim_head": 8},
    maps=("attn",),
    dims=(1, 2, 3),
)
class GlobalAttention(AttnModule):
    """Global multi-head self-attention on a feature map (the community ``AttentionBlock``); B×C×H×W → B×C×H×W.

    ``dims=1`` / ``dims=3``: the same over the N = L positions of a B×C×L signal or the N = D·H·W positions of a
    B×C×D×H×W volume (read as B×C×N tokens, as MONAI's ``SpatialAttentionBlock``).

    The map is read as N = H·W tokens of width C (channels last) and
    ``y = W_o · MHA(LN(x))`` with ``q, k, v = LN(x) W_qkv`` (one Linear without bias, inner width
    ``heads · dim_head``), per-head ``softmax(q kᵀ / √dim_head) v``, heads concatenated and projected back to C.
    As the community code, the output projection is skipped when ``heads == 1`` and ``dim_head == C`` (unless
    ``project_out`` says otherwise) and there is no residual inside (the host adds it).  No positional
    encoding, so the module is permutation-equivariant over positions.

    Differences from the community code: it takes an NCHW map at any H×W (the community code expects B×N×C tokens and has no
    map plumbing); attention runs fused (``scaled_dot_product_attention`` on stride-1 views, peak memory linear
    in N) instead of ``softmax(q @ kᵀ) @ v`` with an explicit B×h×N×N matrix (2 GiB at 64×64 with 8 heads).

    Args:
        channels: C, the token width (``dim`` of the community code).
        heads: number of heads.
        dim_head: width of each head; inner width = ``heads · dim_head`` (need not equal C).
        dropout: dropout on the attention probabilities and after the output projection (seed: one rate).
        qkv_bias: bias in the q/k/v projection (the community code has none).
        project_out: force (True) or drop (False, needs ``heads · dim_head == C``) the output projection;
            ``None`` follows the community code rule.
        dims: spatial rank of the input (1, 2 or 3).

    Shapes: x B×C×H×W → B×C×H×W.  Captured map: ``"attn"`` B×heads×N×N.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        qkv_bias: bool = False,
        project_out: bool | None = None,
        *,
        dims: int = 2,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels, self.dims = check_channels_rank(channels, dims, owner)
        positive_int(heads, owner, "heads")
        positive_int(dim_head, owner, "dim_head")
        self.dropout = check_dropout(dropout, owner)
        inner = heads * dim_head
        if project_out is None:
            project_out = not (heads == 1 and dim_head == channels)
        check_arg(
            project_out or inner == channels,
            owner,
            "heads * dim_head without output projection",
            f"equal to channels ({channels})",
            inner,
        )
        self.heads, self.dim_head, self.inner = heads, dim_head, inner
        self.scale = dim_head**-0.5
        self.norm = nn.LayerNorm(channels)
        self.to_qkv = nn.Linear(channels, 3 * inner, bias=qkv_bias)
        self.to_out = nn.Sequential(nn.Linear(inner, channels), nn.Dropout(dropout)) if project_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        t = self.norm(to_tokens(x, self.dims))
        q, k, v = self.to_qkv(t).chunk(3, dim=-1)  # unpacked directly: FX cannot iterate a proxy in a loop
        q, k, v = split_heads(q, self.heads), split_heads(k, self.heads), split_heads(v, self.heads)
        o = attention(q, k, v, scale=self.scale, dropout_p=self.dropout if self.training else 0.0, module=self)
        return to_map(self.to_out(merge_heads(o)), x)
