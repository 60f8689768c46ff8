"""Sequence blocks on tokens (B×N×C): multi-head attention with masks, positional encodings, Transformer encoder.

* :class:`MultiHeadSelfAttention` (``mhsa``) — scaled dot-product multi-head attention with q/k/v/output
  projections, boolean or additive masks, the seeds' multiplicative ``weights``; fused SDPA kernel.
* :class:`SimplifiedMultiHeadAttention` (``simplified_mhsa``) — the same without the q/k/v projections.
* :class:`PositionalEncoding` (``positional_encoding``) — sinusoidal encoding of any length, ``x + PE``.
* :class:`PositionalEncoding2D` (``positional_encoding_2d``) — its 2-D form for B×C×H×W feature maps.
* :class:`TransformerEncoder` (``transformer_encoder``) — pre-norm encoder layers + final LayerNorm, equal to
  ``torch.nn.TransformerEncoder(norm_first=True, batch_first=True)`` with the same weights.

Mask convention (as the seeds and ``torch.nn.MultiheadAttention``, the *opposite* of the boolean convention of
``F.scaled_dot_product_attention``): a boolean mask is True where a (query, key) pair is **masked out**; a float
mask is added to the logits (``-inf`` = masked out).  Masks broadcast to B×heads×Nq×Nk (a 2-D mask is Nq×Nk,
a 3-D mask is heads×Nq×Nk; a key-padding mask B×Nk goes to ``key_padding_mask``).  A query whose keys are all
masked gets zero attention weights instead of NaN.
"""

from __future__ import annotations

import math

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from . import layers
from .capture import check_map_size, is_capturing, record
from .layers import check_arg, positive_int
from .registry import register

__all__ = [
    "MultiHeadSelfAttention",
    "SimplifiedMultiHeadAttention",
    "PositionalEncoding",
    "PositionalEncoding2D",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]

_TOKENS = "B×N×C"
_PAPER_ATTN = "Attention Is All You Need (Vaswani et al.; NeurIPS 2017)"
_URL_ATTN = "https://arxiv.org/abs/1706.03762"


# --------------------------------------------------------------------------------------------------------------
# Helpers decorated with torch.fx.wrap: they branch on None / dtypes / shapes, which FX symbolic tracing cannot do
# on proxies.  Under FX they become opaque graph nodes that run (and raise) at call time; torch.jit.trace,
# torch.compile and torch.export see through them.
# --------------------------------------------------------------------------------------------------------------


@torch.fx.wrap
def _check_qkv(
    q: torch.Tensor, k: torch.Tensor | None, v: torch.Tensor | None, channels: int, owner: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check q (and k, v when given) are B×N×C with C = ``channels``; k defaults to q, v defaults to k."""
    q = layers.check_dims(q, 3, -1, channels, owner, _TOKENS)
    k = q if k is None else layers.check_dims(k, 3, -1, channels, owner + " (keys)", _TOKENS)
    v = k if v is None else layers.check_dims(v, 3, -1, channels, owner + " (values)", _TOKENS)
    if torch.jit.is_tracing():
        return q, k, v
    if k.shape[0] != q.shape[0] or v.shape[0] != q.shape[0]:
        raise ValueError(
            f"{owner}: expected queries, keys and values with the same batch size, got {q.shape[0]}, {k.shape[0]}, {v.shape[0]}"
        )
    if v.shape[1] != k.shape[1]:
        raise ValueError(f"{owner}: expected keys and values of the same length Nk, got {k.shape[1]} and {v.shape[1]}")
    return q, k, v


def _check_broadcast(m: torch.Tensor, target: tuple[int, int, int, int], owner: str, what: str) -> None:
    ok = m.dim() <= 4 and all(s in (1, t) for s, t in zip(m.shape[::-1], target[::-1]))
    if not ok:
        b, h, nq, nk = target
        raise ValueError(
            f"{owner}: {what} must be broadcastable to B×heads×Nq×Nk = {b}×{h}×{nq}×{nk} "
            f"(2-D: Nq×Nk, 3-D: heads×Nq×Nk), got shape {tuple(m.shape)}"
        )


@torch.fx.wrap
def _prepare_mask(
    mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    owner: str,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """User masks (True / -inf = masked out) → (SDPA mask, dead rows).

    q: B×h×Nq×d, k: B×h×Nk×d.  The SDPA mask is boolean with True = keep, or additive in q's dtype.  ``dead``
    (broadcastable to B×h×Nq×1) marks queries whose keys are all masked: their mask row is opened (so softmax
    stays finite in every kernel and dtype, forward and backward) and their output is zeroed afterwards.
    """
    if mask is None and key_padding_mask is None:
        return None, None
    b, h, nq, nk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    target = (b, h, nq, nk)
    parts: list[torch.Tensor] = []
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"{owner}: mask must be a tensor (bool or float), got {type(mask).__name__}")
        _check_broadcast(mask, target, owner, "mask")
        parts.append(mask)
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or tuple(key_padding_mask.shape) != (b, nk):
            got = tuple(key_padding_mask.shape) if isinstance(key_padding_mask, torch.Tensor) else type(key_padding_mask).__name__
            raise ValueError(f"{owner}: key_padding_mask must be a B×Nk = {b}×{nk} tensor, got {got}")
        parts.append(key_padding_mask[:, None, None, :])
    if all(p.dtype == torch.bool for p in parts):
        masked = parts[0] if len(parts) == 1 else parts[0] | parts[1]
        keep = ~masked
        dead = ~keep.any(-1, keepdim=True)
        return keep | dead, dead
    if any(p.is_complex() or not (p.is_floating_point() or p.dtype == torch.bool) for p in parts):
        raise ValueError(f"{owner}: mask must be bool or floating point, got {[p.dtype for p in parts]}")
    dtype = q.dtype
    add = None
    for p in parts:
        p = torch.zeros((), dtype=dtype, device=p.device).masked_fill(p, float("-inf")) if p.dtype == torch.bool else p.to(dtype)
        add = p if add is None else add + p
    assert add is not None
    dead = (add == float("-inf")).all(-1, keepdim=True)
    return add.masked_fill(dead, 0.0), dead


@torch.fx.wrap
def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dead: torch.Tensor | None,
    weights: torch.Tensor | None,
    scale: float,
    dropout_p: float,
    owner: str,
) -> torch.Tensor:
    """softmax(q kᵀ·scale [· weights] [+ mask]) v with zeroed dead rows; fused SDPA unless ``weights`` is given."""
    if weights is None:  # fused kernel, also when d_k != d_v (the shared wrapper pads the narrower heads)
        out = layers.fused_attention(q, k, v, mask, scale, dropout_p)
    else:
        if not isinstance(weights, torch.Tensor):
            raise ValueError(f"{owner}: weights must be a tensor, got {type(weights).__name__}")
        _check_broadcast(weights, (q.shape[0], q.shape[1], q.shape[2], k.shape[2]), owner, "weights")
        probs = _probabilities(q, k, mask, dead, weights, scale)
        probs = F.dropout(probs, dropout_p, training=dropout_p > 0)
        out = probs @ v
    if dead is not None:
        out = out.masked_fill(dead, 0.0)
    return out


def _probabilities(
    q: torch.Tensor,
    k: torch.Tensor,
    mask: torch.Tensor | None,
    dead: torch.Tensor | None,
    weights: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """The explicit B×h×Nq×Nk attention probabilities (softmax in at least float32), zero on dead rows."""
    acc = torch.promote_types(q.dtype, torch.float32)
    logits = (q @ k.transpose(-2, -1)).to(acc) * scale
    if weights is not None:
        logits = logits * weights.to(acc)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask.to(acc)
    probs = logits.softmax(-1)
    if dead is not None:
        probs = probs.masked_fill(dead, 0.0)
    return probs.to(q.dtype)


@torch.fx.wrap
def _zero_dead_queries(out: torch.Tensor, dead: torch.Tensor | None) -> torch.Tensor:
    """Zero the output rows (B×Nq×C) of queries that see no key in any head."""
    if dead is None:
        return out
    b, nq = out.shape[0], out.shape[1]
    while dead.dim() < 4:
        dead = dead.unsqueeze(0)
    all_dead = dead.all(1).expand(b, nq, 1) if dead.shape[1] > 1 else dead[:, 0].expand(b, nq, 1)
    return out.masked_fill(all_dead, 0.0)


class _DotProductAttention(nn.Module):
    """Shared forward of the two multi-head attention modules (projections are supplied by subclasses)."""

    owner: str = "attention"
    channels: int
    heads: int
    d_k: int
    d_v: int
    scale: float
    attn_drop: float

    def _project(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
            weights: multiplicative weights on the scaled logits (before the mask and softmax, as the seeds),
                broadcastable to B×heads×Nq×Nk.  Builds the Nq×Nk matrix (no fused kernel).
            key_padding_mask: B×Nk, bool (True = padding, ignored) or additive float.

        Returns:
            B×Nq×C.  Queries with every key masked (in every head) output zeros.
        """
        q, k, v = _check_qkv(q, k, v, self.channels, self.owner)
        qh, kh, vh = self._project(q, k, v)  # B×h×N×d, stride-1 last dims
        sdpa_mask, dead = _prepare_mask(mask, key_padding_mask, qh, kh, self.owner)
        p = self.attn_drop if self.training else 0.0
        if is_capturing(self):  # explicit probabilities, recorded (the only case that builds Nq×Nk without weights)
            check_map_size(self, (*qh.shape[:-1], kh.shape[-2]), "attn")
            probs = _probabilities(qh, kh, sdpa_mask, dead, weights, self.scale)
            record(self, "attn", probs)
            out = F.dropout(probs, p, training=p > 0) @ vh
        else:
            out = _attend(qh, kh, vh, sdpa_mask, dead, weights, self.scale, p, self.owner)
        out = self.proj_drop(self.fc_o(out.transpose(1, 2).flatten(2)))
        return _zero_dead_queries(out, dead)


def _heads_dims(channels: int, heads: int, d_k: int | None, d_v: int | None, owner: str) -> tuple[int, int]:
    positive_int(channels, owner, "channels (d_model)")
    positive_int(heads, owner, "heads")
    if d_k is None or d_v is None:
        check_arg(channels % heads == 0, owner, "heads", f"a divisor of channels={channels} (or give d_k and d_v)", heads)
    d_k = channels // heads if d_k is None else positive_int(d_k, owner, "d_k")
    d_v = channels // heads if d_v is None else positive_int(d_v, owner, "d_v")
    return d_k, d_v


def _check_p(p: float, owner: str, what: str) -> float:
    check_arg(isinstance(p, (int, float)) and 0.0 <= p < 1.0, owner, what, "a probability in [0, 1)", p)
    return float(p)


@register(
    "mhsa",
    family="sequence",
    paper=_PAPER_ATTN,
    url=_URL_ATTN,
    layout="tokens",
    complexity="O(N^2)",
    summary="Multi-head scaled dot-product attention with masks and weights; fused SDPA, O(N) memory.",
    test_kwargs={"heads": 2},
)
class MultiHeadSelfAttention(_DotProductAttention):
    """Multi-head scaled dot-product attention (Vaswani et al., NeurIPS 2017); tokens B×Nq×C → B×Nq×C.

    ``head_i = softmax(q W_qi (k W_ki)ᵀ / √d_k + mask) · v W_vi``, ``out = [head_1 … head_h] W_o``, with
    ``forward(q, k=None, v=None, mask=None, weights=None)``: self-attention when k and v are omitted.
    Masks: bool with True = masked out (as the seeds and ``nn.MultiheadAttention``; the opposite of
    ``F.scaled_dot_product_attention``'s bool convention) or additive float, broadcastable to
    B×heads×Nq×Nk; ``key_padding_mask`` B×Nk.  ``weights`` multiply the scaled logits before mask and softmax,
    as in the seeds.  Without ``weights`` the product runs in ``F.scaled_dot_product_attention`` (the fused CPU
    flash kernel: memory linear in N, no Nq×Nk matrix unless ``attnzoo.capture_attention`` records it under
    ``"attn"``).

    Differences from the community ``ScaledDotProductAttention`` (External-Attention / seed 001): that version
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

    owner = "MultiHeadSelfAttention"

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
        self.attn_drop = _check_p(attn_drop, self.owner, "attn_drop")
        self.fc_q = nn.Linear(channels, heads * d_k, bias=qkv_bias)
        self.fc_k = nn.Linear(channels, heads * d_k, bias=qkv_bias)
        self.fc_v = nn.Linear(channels, heads * d_v, bias=qkv_bias)
        self.fc_o = nn.Linear(heads * d_v, channels)
        self.proj_drop = nn.Dropout(_check_p(proj_drop, self.owner, "proj_drop"))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases (as ``nn.MultiheadAttention``'s input projection)."""
        for lin in (self.fc_q, self.fc_k, self.fc_v, self.fc_o):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def _project(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.heads
        return (
            self.fc_q(q).unflatten(-1, (h, self.d_k)).transpose(1, 2),
            self.fc_k(k).unflatten(-1, (h, self.d_k)).transpose(1, 2),
            self.fc_v(v).unflatten(-1, (h, self.d_v)).transpose(1, 2),
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}, heads={self.heads}, d_k={self.d_k}, d_v={self.d_v}, attn_drop={self.attn_drop}"


@register(
    "simplified_mhsa",
    family="sequence",
    paper=_PAPER_ATTN,
    url=_URL_ATTN,
    layout="tokens",
    complexity="O(N^2)",
    summary="Multi-head attention without q/k/v projections (heads split the channels), output projection only.",
    test_kwargs={"heads": 2},
)
class SimplifiedMultiHeadAttention(_DotProductAttention):
    """Multi-head scaled dot-product attention without input projections; tokens B×Nq×C → B×Nq×C.

    The channels of q, k and v are split into ``heads`` groups of ``d = C / heads``;
    ``head_i = softmax(q_i k_iᵀ / √d + mask) v_i`` and ``out = [head_1 … head_h] W_o``.  Same ``forward``,
    masks, ``weights`` and fused SDPA path as :class:`MultiHeadSelfAttention`.

    Differences from the community ``SimplifiedScaledDotProductAttention`` (External-Attention / seed 001):
    fully masked rows give zeros instead of NaN, no N×N matrix is built, ``fc_o`` uses Xavier init instead of
    std 1e-3, and ``channels`` not divisible by ``heads`` is a ``ValueError`` (there it is a reshape error).

    Args:
        channels: model width C (divisible by ``heads``).
        heads: number of heads.
        attn_drop: dropout on the attention probabilities.
        proj_drop: dropout on the output.
    """

    owner = "SimplifiedMultiHeadAttention"

    def __init__(self, channels: int, heads: int = 8, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        positive_int(channels, self.owner, "channels (d_model)")
        positive_int(heads, self.owner, "heads")
        check_arg(channels % heads == 0, self.owner, "heads", f"a divisor of channels={channels}", heads)
        self.channels, self.heads = channels, heads
        self.d_k = self.d_v = channels // heads
        self.scale = self.d_k**-0.5
        self.attn_drop = _check_p(attn_drop, self.owner, "attn_drop")
        self.fc_o = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(_check_p(proj_drop, self.owner, "proj_drop"))
        nn.init.xavier_uniform_(self.fc_o.weight)
        nn.init.zeros_(self.fc_o.bias)

    def _project(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.heads
        return tuple(t.unflatten(-1, (h, self.d_k)).transpose(1, 2) for t in (q, k, v))  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, heads={self.heads}, attn_drop={self.attn_drop}"


# --------------------------------------------------------------------------------------------------------------
# Positional encodings
# --------------------------------------------------------------------------------------------------------------


def sinusoidal_table(
    length: int, channels: int, base: float = 10000.0, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The length×channels sinusoidal table: ``PE[p, 2i] = sin(p / base^(2i/C))``, ``PE[p, 2i+1] = cos(...)``.

    Computed in float64 (float32 where the device has no float64) and cast to ``dtype``: the usual float32
    computation loses ~1e-4 at positions of a few thousand.  Odd ``channels`` work (the last column is a sine).
    """
    work = torch.float64 if torch.device(device or "cpu").type in ("cpu", "cuda") else torch.float32
    pos = torch.arange(length, dtype=work, device=device)[:, None]
    inv_freq = torch.exp(torch.arange(0, channels, 2, dtype=work, device=device) * (-math.log(base) / channels))
    angles = pos * inv_freq  # length × ceil(C/2)
    pe = torch.empty(length, channels, dtype=work, device=device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : channels // 2])
    return pe.to(dtype)


@torch.fx.wrap
def _pe_rows(pe: torch.Tensor, x: torch.Tensor, base: float) -> torch.Tensor:
    """The first N rows of the stored table, or a freshly computed table when N exceeds it."""
    n = x.shape[1]
    if n <= pe.shape[0]:
        return pe[:n]
    return sinusoidal_table(n, pe.shape[1], base, device=pe.device, dtype=pe.dtype)


@register(
    "positional_encoding",
    family="sequence",
    paper=_PAPER_ATTN,
    url=_URL_ATTN,
    layout="tokens",
    complexity="O(N)",
    summary="Sinusoidal positional encoding (even dims sin, odd dims cos) added to tokens; any length.",
)
class PositionalEncoding(nn.Module):
    """Sinusoidal positional encoding (Vaswani et al., NeurIPS 2017); tokens B×N×C → B×N×C.

    ``y = dropout(x + PE[:N])`` with ``PE[p, 2i] = sin(p / 10000^(2i/C))`` and ``PE[p, 2i+1] = cos(p / 10000^(2i/C))``
    (the seeds' layout: even channels sine, odd channels cosine).  A table of ``max_len`` rows is kept as a
    non-persistent buffer; longer sequences get a table computed on the fly instead of failing (the seed's
    version raises a size-mismatch error beyond ``max_len``).  The table is computed in float64, odd C works,
    and it follows ``.to(dtype)`` of the module; the output has the dtype of ``x``.

    Args:
        channels: model width C.
        max_len: rows of the precomputed table (only a cache; any N works).
        dropout: dropout after the addition (the seed defaults to 0.1; 0 here as every attnzoo dropout).
        base: the wavelength base (10000 in the paper).
    """

    def __init__(self, channels: int, max_len: int = 5000, dropout: float = 0.0, base: float = 10000.0) -> None:
        super().__init__()
        positive_int(channels, "PositionalEncoding", "channels")
        positive_int(max_len, "PositionalEncoding", "max_len")
        check_arg(isinstance(base, (int, float)) and base > 1, "PositionalEncoding", "base", "a number > 1", base)
        self.channels, self.max_len, self.base = channels, max_len, float(base)
        self.register_buffer("pe", sinusoidal_table(max_len, channels, self.base), persistent=False)
        self.dropout = nn.Dropout(_check_p(dropout, "PositionalEncoding", "dropout"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_dims(x, 3, -1, self.channels, "PositionalEncoding", _TOKENS)
        return self.dropout(x + _pe_rows(self.pe, x, self.base).to(x.dtype))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, max_len={self.max_len}"


@register(
    "positional_encoding_2d",
    family="sequence",
    paper=_PAPER_ATTN + "; 2-D form as in DETR (Carion et al.; ECCV 2020)",
    url="https://arxiv.org/abs/2005.12872",
    layout="nchw",
    complexity="O(N)",
    summary="2-D sinusoidal positional encoding added to a feature map: half the channels for rows, half for columns.",
)
class PositionalEncoding2D(nn.Module):
    """2-D sinusoidal positional encoding for feature maps; B×C×H×W → B×C×H×W.

    ``y = dropout(x + PE)``: channels ``[0, C/2)`` carry the 1-D encoding of the row index (``sinusoidal_table``
    with C/2 channels: even sin, odd cos), channels ``[C/2, C)`` that of the column index.  As DETR's sine
    embedding without normalisation: positions are raw pixel indices, so any H×W works and a crop of a map
    keeps the encoding of its pixels.  The table is separable: only H·C/2 + W·C/2 sines are computed per call.

    Args:
        channels: input channels C (even).
        dropout: dropout after the addition.
        base: the wavelength base (10000).
    """

    def __init__(self, channels: int, dropout: float = 0.0, base: float = 10000.0) -> None:
        super().__init__()
        positive_int(channels, "PositionalEncoding2D", "channels")
        check_arg(channels % 2 == 0, "PositionalEncoding2D", "channels", "even (half for rows, half for columns)", channels)
        check_arg(isinstance(base, (int, float)) and base > 1, "PositionalEncoding2D", "base", "a number > 1", base)
        self.channels, self.base = channels, float(base)
        self.dropout = nn.Dropout(_check_p(dropout, "PositionalEncoding2D", "dropout"))

    def encoding(self, h: int, w: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The C×H×W encoding that ``forward`` adds."""
        return _grid_table(h, w, self.channels // 2, self.base, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "PositionalEncoding2D")
        return self.dropout(x + _pe_2d_table(x, self.channels // 2, self.base))

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def _grid_table(h: int, w: int, half: int, base: float, device: torch.device | str | None, dtype: torch.dtype) -> torch.Tensor:
    rows = sinusoidal_table(h, half, base, device, dtype).t()[:, :, None].expand(half, h, w)
    cols = sinusoidal_table(w, half, base, device, dtype).t()[:, None, :].expand(half, h, w)
    return torch.cat([rows, cols], 0)


@torch.fx.wrap
def _pe_2d_table(x: torch.Tensor, half: int, base: float) -> torch.Tensor:
    """C×H×W encoding for the size, device and dtype of ``x``."""
    return _grid_table(x.shape[2], x.shape[3], half, base, x.device, x.dtype)


# --------------------------------------------------------------------------------------------------------------
# Transformer encoder
# --------------------------------------------------------------------------------------------------------------


class TransformerEncoderLayer(nn.Module):
    """One pre-norm encoder layer; B×N×C → B×N×C.

    ``x = x + drop(MHSA(LN1(x), mask))``, ``x = x + drop(W2 drop(act(W1 LN2(x))))`` — the computation of
    ``nn.TransformerEncoderLayer(norm_first=True, batch_first=True)`` (same sub-module names, attention
    weights in ``self_attn.fc_q/fc_k/fc_v/fc_o`` instead of the packed ``in_proj_weight``).

    Args:
        channels: model width d_model.
        heads: attention heads.
        dim_feedforward: hidden width of the feed-forward network.
        dropout: dropout on attention probabilities, the residual branches and the FFN hidden layer.
        activation: ``"relu"`` or ``"gelu"`` (exact GELU, as PyTorch).
        qkv_bias: biases in the q/k/v projections.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
        qkv_bias: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        owner = "TransformerEncoderLayer"
        dim_feedforward = 4 * channels if dim_feedforward is None else positive_int(dim_feedforward, owner, "dim_feedforward")
        check_arg(activation in ("relu", "gelu"), owner, "activation", "'relu' or 'gelu'", activation)
        dropout = _check_p(dropout, owner, "dropout")
        self.self_attn = MultiHeadSelfAttention(channels, heads, qkv_bias=qkv_bias, attn_drop=dropout)
        self.linear1 = nn.Linear(channels, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, channels)
        self.norm1 = nn.LayerNorm(channels, eps=norm_eps)
        self.norm2 = nn.LayerNorm(channels, eps=norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.ReLU() if activation == "relu" else nn.GELU()

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.dropout1(self.self_attn(self.norm1(x), None, None, mask, None, key_padding_mask))
        return x + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(self.norm2(x))))))


@register(
    "transformer_encoder",
    family="sequence",
    paper=_PAPER_ATTN + "; pre-norm as in Xiong et al. (ICML 2020)",
    url=_URL_ATTN,
    layout="tokens",
    complexity="O(N^2)",
    summary="Pre-norm Transformer encoder: num_layers × (MHSA + FFN with residuals) + final LayerNorm.",
    test_kwargs={"heads": 2, "num_layers": 2, "dim_feedforward": 32},
)
class TransformerEncoder(nn.Module):
    """Pre-norm Transformer encoder (seed 004); tokens B×N×C → B×N×C.

    ``num_layers`` × :class:`TransformerEncoderLayer` (pre-norm attention and feed-forward sub-layers with
    residuals) followed by a final LayerNorm.  With the same weights it equals
    ``nn.TransformerEncoder(nn.TransformerEncoderLayer(C, heads, dim_feedforward, dropout, activation,
    batch_first=True, norm_first=True), num_layers, norm=nn.LayerNorm(C))`` (tested), with the masks passed
    to every layer: ``mask`` bool (True = masked out) or additive, broadcastable to B×heads×N×N, and
    ``key_padding_mask`` B×N (True = padding).  Attention runs in the fused SDPA kernel.

    Differences from seed 004: dropout defaults to 0 (seed: 0.1), masks are supported (the seed's layers take
    none), ``dim_feedforward`` defaults to 4·C (2048 at C = 512, as the seed and PyTorch) and the attention's
    fully masked rows give zeros instead of NaN.

    Args:
        channels: model width d_model.
        num_layers: number of encoder layers.
        heads: attention heads (must divide ``channels``).
        dim_feedforward: FFN hidden width (default 4·C).
        dropout: dropout everywhere inside the layers.
        activation: ``"relu"`` or ``"gelu"``.
        qkv_bias: biases in the q/k/v projections.
        norm_eps: LayerNorm epsilon.
        final_norm: apply the final LayerNorm.
    """

    def __init__(
        self,
        channels: int,
        num_layers: int = 6,
        heads: int = 8,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
        qkv_bias: bool = True,
        norm_eps: float = 1e-5,
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        positive_int(channels, "TransformerEncoder", "channels (d_model)")
        positive_int(num_layers, "TransformerEncoder", "num_layers")
        positive_int(heads, "TransformerEncoder", "heads")
        check_arg(channels % heads == 0, "TransformerEncoder", "heads", f"a divisor of channels={channels}", heads)
        self.channels, self.num_layers = channels, num_layers
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(channels, heads, dim_feedforward, dropout, activation, qkv_bias, norm_eps)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(channels, eps=norm_eps) if final_norm else nn.Identity()

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: B×N×C; ``mask`` / ``key_padding_mask`` as in :class:`MultiHeadSelfAttention`."""
        x = layers.check_dims(x, 3, -1, self.channels, "TransformerEncoder", _TOKENS)
        for layer in self.layers:
            x = layer(x, mask, key_padding_mask)
        return self.norm(x)
