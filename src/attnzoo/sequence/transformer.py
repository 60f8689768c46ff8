"""Pre-norm Transformer encoder (Vaswani et al.; NeurIPS 2017; pre-norm as Xiong et al.; ICML 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.fx
import torch.nn as nn

from ..layers import (
    DEPTH_BOUND,
    AttnModule,
    SizeBound,
    check_dropout,
    check_rank,
    positive_int,
    positive_number,
    renamed_args,
)
from ..layers.checks import check_attention_args, check_choice

__all__ = ["TransformerEncoder", "TransformerEncoderLayer"]

from .mhsa import _PAPER_ATTN, _TOKENS, MultiHeadSelfAttention, _register_tokens


class TransformerEncoderLayer(AttnModule):
    """One pre-norm encoder layer; B×N×C → B×N×C.

    ``x = x + drop(MHSA(LN1(x), mask))``, ``x = x + drop(W2 drop(act(W1 LN2(x))))`` — the computation of
    ``nn.TransformerEncoderLayer(norm_first=True, batch_first=True)`` (same sub-module names, attention
    weights in ``self_attn.fc_q/fc_k/fc_v/fc_o`` instead of the packed ``in_proj_weight``).

    Args:
        channels: model width d_model.
        heads: attention heads.
        dim_feedforward: hidden width of the feed-forward network.
        dropout: dropout on attention probabilities, the residual branches and the FFN hidden layer.
        act: ``"relu"`` or ``"gelu"`` (exact GELU, as PyTorch; formerly ``activation``).
        qkv_bias: biases in the q/k/v projections.
        norm_eps: LayerNorm epsilon.
    """

    @renamed_args(activation="act")
    def __init__(
        self,
        channels: int,
        heads: int = 8,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        act: str = "relu",
        qkv_bias: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        owner = self.owner
        dim_feedforward = (
            4 * channels if dim_feedforward is None else positive_int(dim_feedforward, owner, "dim_feedforward")
        )
        check_choice(act, ("relu", "gelu"), owner, "act")
        dropout = check_dropout(dropout, owner, "dropout")
        positive_number(norm_eps, owner, "norm_eps")
        self.self_attn = MultiHeadSelfAttention(channels, heads, qkv_bias=qkv_bias, attn_drop=dropout)
        self.linear1 = nn.Linear(channels, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, channels)
        self.norm1 = nn.LayerNorm(channels, eps=norm_eps)
        self.norm2 = nn.LayerNorm(channels, eps=norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.ReLU() if act == "relu" else nn.GELU()

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.dropout1(self.self_attn(self.norm1(x), None, None, mask, None, key_padding_mask))
        return x + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(self.norm2(x))))))


@_register_tokens(
    "transformer_encoder",
    paper=_PAPER_ATTN + "; pre-norm as in Xiong et al. (ICML 2020)",
    complexity="O(N^2)",
    summary="Pre-norm Transformer encoder: num_layers × (MHSA + FFN with residuals) + final LayerNorm.",
    test_kwargs={"heads": 2, "num_layers": 2, "dim_feedforward": 32},
)
class TransformerEncoder(AttnModule):
    """Pre-norm Transformer encoder (community code); tokens B×N×C → B×N×C.

    ``num_layers`` × :class:`TransformerEncoderLayer` (pre-norm attention and feed-forward sub-layers with
    residuals) followed by a final LayerNorm.  With the same weights it equals
    ``nn.TransformerEncoder(nn.TransformerEncoderLayer(C, heads, dim_feedforward, dropout, activation,
    batch_first=True, norm_first=True), num_layers, norm=nn.LayerNorm(C))`` (tested), with the masks passed
    to every layer: ``mask`` bool (True = masked out) or additive, broadcastable to B×heads×N×N, and
    ``key_padding_mask`` B×N (True = padding).  Attention runs in the fused SDPA kernel.

    Differences from the community code: dropout defaults to 0 (community code: 0.1), masks are supported (the community code's layers take
    none), ``dim_feedforward`` defaults to 4·C (2048 at C = 512, as the community code and PyTorch) and the attention's
    fully masked rows give zeros instead of NaN.

    Args:
        channels: model width d_model.
        num_layers: number of encoder layers.
        heads: attention heads (must divide ``channels``).
        dim_feedforward: FFN hidden width (default 4·C).
        dropout: dropout everywhere inside the layers.
        act: ``"relu"`` or ``"gelu"`` (formerly ``activation``).
        qkv_bias: biases in the q/k/v projections.
        norm_eps: LayerNorm epsilon.
        final_norm: apply the final LayerNorm.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "num_layers": SizeBound(DEPTH_BOUND, "layers"),
    }

    @renamed_args(activation="act")
    def __init__(
        self,
        channels: int,
        num_layers: int = 6,
        heads: int = 8,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        act: str = "relu",
        qkv_bias: bool = True,
        norm_eps: float = 1e-5,
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        # the layers validate these too, but errors must name this class
        check_attention_args(self.owner, channels, heads, channels_what="channels (d_model)")
        positive_int(num_layers, self.owner, "num_layers")
        if dim_feedforward is not None:
            positive_int(dim_feedforward, self.owner, "dim_feedforward")
        check_choice(act, ("relu", "gelu"), self.owner, "act")
        check_dropout(dropout, self.owner, "dropout")
        positive_number(norm_eps, self.owner, "norm_eps")
        self.channels, self.num_layers = channels, num_layers
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(channels, heads, dim_feedforward, dropout, act, qkv_bias, norm_eps)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(channels, eps=norm_eps) if final_norm else nn.Identity()

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: B×N×C; ``mask`` / ``key_padding_mask`` as in :class:`MultiHeadSelfAttention`."""
        x = check_rank(x, 3, -1, self.channels, self.owner, _TOKENS)
        for layer in self.layers:
            x = layer(x, mask, key_padding_mask)
        return self.norm(x)
