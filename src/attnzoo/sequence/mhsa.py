"""Multi-head scaled dot-product attention on token sequences (Vaswani et al.; NeurIPS 2017), with masks.

Paper: https://arxiv.org/abs/1706.03762
"""

from __future__ import annotations

import functools

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .. import tracing
from ..capture import check_map_size, is_capturing, record
from ..functional import (
    masked_attention,
    prepare_mask,
    probabilities,
    zero_dead_queries,
)
from ..layers import (
    AttnModule,
    check_dropout,
    check_rank,
    fx_leaf,
    positive_int,
)
from ..layers.checks import check_attention_args, check_heads
from ..registry import register

__all__ = ["MultiHeadSelfAttention", "SimplifiedMultiHeadAttention"]


_TOKENS = "B×N×C"
_PAPER_ATTN = "Attention Is All You Need (Vaswani et al.; NeurIPS 2017)"
_URL_ATTN = "https://arxiv.org/abs/1706.03762"
#: What the token modules after "Attention Is All You Need" register alike (here, positional.py, transformer.py).
_register_tokens = functools.partial(register, family="sequence", paper=_PAPER_ATTN, url=_URL_ATTN, layout="tokens")


@fx_leaf
def _check_qkv(
    q: torch.Tensor, k: torch.Tensor | None, v: torch.Tensor | None, channels: int, owner: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check q (and k, v when given) are B×N×C with C = ``channels``; k defaults to q, v defaults to k."""
    q = check_rank(q, 3, -1, channels, owner, _TOKENS)
    k = q if k is None else check_rank(k, 3, -1, channels, owner + " (keys)", _TOKENS)
    v = k if v is None else check_rank(v, 3, -1, channels, owner + " (values)", _TOKENS)
    if tracing.is_tracing():
        return q, k, v
    if k.shape[0] != q.shape[0] or v.shape[0] != q.shape[0]:
        raise ValueError(
            f"{owner}: expected queries, keys and values with the same batch size, got {q.shape[0]}, {k.shape[0]}, {v.shape[0]}"
        )
    if v.shape[1] != k.shape[1]:
        raise ValueError(f"{owner}: expected keys and values of the same length Nk, got {k.shape[1]} and {v.shape[1]}")
    return q, k, v


class _DotProductAttention(AttnModule):
    """Shared forward of the two multi-head attention modules (projections are supplied by subclasses)."""

    channels: int
    heads: int
    d_k: int
    d_v: int
    scale: float
    attn_drop: float
    fc_o: nn.Linear
    proj_drop: nn.Module

    def _project(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor | None = None,
        v: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``q`` (B×Nq×C) to ``k`` (B×Nk×C, default q) with values ``v`` (B×Nk×C, default k).

        Args:
            q, k, v: queries, keys, values (self-attention when k and v are omitted).
            mask: bool (True = masked out) or additive float, broadcastable to B×heads×Nq×Nk.
            weights: multiplicative weights on the scaled logits (before the mask and softmax, as the community code),
                broadcastable to B×heads×Nq×Nk.  Builds the Nq×Nk matrix (no fused kernel).
            key_padding_mask: B×Nk, bool (True = padding, ignored) or additive float.

        Returns:
            B×Nq×C.  Queries with every key masked (in every head) output zeros.
        """
        q, k, v = _check_qkv(q, k, v, self.channels, self.owner)
        qh, kh, vh = self._project(q, k, v)  # B×h×N×d, stride-1 last dims
        sdpa_mask, dead = prepare_mask(mask, key_padding_mask, qh, kh, self.owner)
        p = self.attn_drop if self.training else 0.0
        if is_capturing(self):  # explicit probabilities, recorded (the only case that builds Nq×Nk without weights)
            check_map_size(self, (*qh.shape[:-1], kh.shape[-2]), "attn")
            probs = probabilities(qh, kh, sdpa_mask, dead, weights, self.scale)
            record(self, "attn", probs)
            out = F.dropout(probs, p, training=p > 0) @ vh
        else:
            out = masked_attention(qh, kh, vh, sdpa_mask, dead, weights, self.scale, p, self.owner)
        out = self.proj_drop(self.fc_o(out.transpose(1, 2).flatten(2)))
        return zero_dead_queries(out, dead)


def _heads_dims(channels: int, heads: int, d_k: int | None, d_v: int | None, owner: str) -> tuple[int, int]:
    positive_int(channels, owner, "channels (d_model)")
    if d_k is None or d_v is None:
        check_heads(heads, channels, owner, note=" (or give d_k and d_v)")
    else:
        positive_int(heads, owner, "heads")
    d_k = channels // heads if d_k is None else positive_int(d_k, owner, "d_k")
    d_v = channels // heads if d_v is None else positive_int(d_v, owner, "d_v")
    return d_k, d_v


@_register_tokens(
    "mhsa",
    complexity="O(N^2)",
    summary="Multi-head scaled dot-product attention with masks and weights; fused SDPA, O(N) memory.",
    test_kwargs={"heads": 2},
    maps=("attn",),
)
class MultiHeadSelfAttention(_DotProductAttention):
    """Multi-head scaled dot-product attention (Vaswani et al., NeurIPS 2017); tokens B×Nq×C → B×Nq×C.

    ``head_i = softmax(q W_qi (k W_ki)ᵀ / √d_k + mask) · v W_vi``, ``out = [head_1 … head_h] W_o``, with
    ``forward(q, k=None, v=None, mask=None, weights=None)``: self-attention when k and v are omitted.
    Masks: bool with True = masked out (as the community code and ``nn.MultiheadAttention``; the opposite of
    ``F.scaled_dot_product_attention``'s bool convention) or additive float, broadcastable to
    B×heads×Nq×Nk; ``key_padding_mask`` B×Nk.  ``weights`` multiply the scaled logits before mask and softmax,
    as in the community code.  Without ``weights`` the product runs in ``F.scaled_dot_product_attention`` (the fused CPU
    flash kernel: memory linear in N, no Nq×Nk matrix unless ``attnzoo.capture_attention`` records it under
    ``"attn"``).

    Differences from the community ``ScaledDotProductAttention`` (External-Attention): that version
    materialises B×h×Nq×Nk logits and probabilities (GiBs at N = 4096), fills masks with ``-inf`` so a fully
    masked query row is NaN (fp32 and fp16) — here such a row outputs zeros —, and initialises every Linear
    with std 1e-3 so outputs start ~1e-5 of the input scale; here projections use Xavier-uniform weights and zero
    biases (as ``nn.MultiheadAttention``).  Parameter names (``fc_q``, ``fc_k``, ``fc_v``, ``fc_o``) match the
    community module, so its state dicts load unchanged.  ``d_k``/``d_v`` default to ``channels // heads``
    (the community README's ``d_k = d_model`` makes projections ``heads``× wider than standard MHA).

    Args:
        channels: model width d_model (last dim of q, k, v and of the output).
        heads: number of heads h.
        d_k: query/key width per head (default ``channels // heads``).
        d_v: value width per head (default ``channels // heads``).
        qkv_bias: biases in the q/k/v projections.
        attn_drop: dropout on the attention probabilities.
        proj_drop: dropout on the output.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        d_k: int | None = None,
        d_v: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        d_k, d_v = _heads_dims(channels, heads, d_k, d_v, self.owner)
        self.channels, self.heads, self.d_k, self.d_v = channels, heads, d_k, d_v
        self.scale = d_k**-0.5
        self.attn_drop = check_dropout(attn_drop, self.owner, "attn_drop")
        self.fc_q = nn.Linear(channels, heads * d_k, bias=qkv_bias)
        self.fc_k = nn.Linear(channels, heads * d_k, bias=qkv_bias)
        self.fc_v = nn.Linear(channels, heads * d_v, bias=qkv_bias)
        self.fc_o = nn.Linear(heads * d_v, channels)
        self.proj_drop = nn.Dropout(check_dropout(proj_drop, self.owner, "proj_drop"))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases (as ``nn.MultiheadAttention``'s input projection)."""
        for lin in (self.fc_q, self.fc_k, self.fc_v, self.fc_o):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def _project(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.heads
        return (
            self.fc_q(q).unflatten(-1, (h, self.d_k)).transpose(1, 2),
            self.fc_k(k).unflatten(-1, (h, self.d_k)).transpose(1, 2),
            self.fc_v(v).unflatten(-1, (h, self.d_v)).transpose(1, 2),
        )

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, heads={self.heads}, d_k={self.d_k}, d_v={self.d_v}, attn_drop={self.attn_drop}"
        )


@_register_tokens(
    "simplified_mhsa",
    complexity="O(N^2)",
    summary="Multi-head attention without q/k/v projections (heads split the channels), output projection only.",
    test_kwargs={"heads": 2},
    maps=("attn",),
)
class SimplifiedMultiHeadAttention(_DotProductAttention):
    """Multi-head scaled dot-product attention without input projections; tokens B×Nq×C → B×Nq×C.

    The channels of q, k and v are split into ``heads`` groups of ``d = C / heads``;
    ``head_i = softmax(q_i k_iᵀ / √d + mask) v_i`` and ``out = [head_1 … head_h] W_o``.  Same ``forward``,
    masks, ``weights`` and fused SDPA path as :class:`MultiHeadSelfAttention`.

    Differences from the community ``SimplifiedScaledDotProductAttention`` (External-Attention):
    fully masked rows give zeros instead of NaN, no N×N matrix is built, ``fc_o`` uses Xavier init instead of
    std 1e-3, and ``channels`` not divisible by ``heads`` is a ``ValueError`` (there it is a reshape error).

    Args:
        channels: model width C (divisible by ``heads``).
        heads: number of heads.
        attn_drop: dropout on the attention probabilities.
        proj_drop: dropout on the output.
    """

    def __init__(self, channels: int, heads: int = 8, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.d_k, self.attn_drop, proj_drop = check_attention_args(
            self.owner, channels, heads, attn_drop=attn_drop, proj_drop=proj_drop, channels_what="channels (d_model)"
        )
        self.channels, self.heads, self.d_v = channels, heads, self.d_k
        self.scale = self.d_k**-0.5
        self.fc_o = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.xavier_uniform_(self.fc_o.weight)
        nn.init.zeros_(self.fc_o.bias)

    def _project(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.heads
        return tuple(t.unflatten(-1, (h, self.d_k)).transpose(1, 2) for t in (q, k, v))  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, heads={self.heads}, attn_drop={self.attn_drop}"
