"""EfficientViT's cascaded group attention (CGA) in local windows, any H×W and no cached bias.

Paper: EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention (Liu et al.; CVPR 2023),
https://arxiv.org/abs/2305.07027.  Official code: microsoft/Cream ``EfficientViT/classification/model/efficientvit.py``
(MIT); timm ``efficientvit_msra.CascadedGroupAttention`` / ``LocalWindowAttention`` (Apache-2.0) is the parity
oracle.  Written from the paper; docs/provenance/cascaded_group_attention.md lists how the copies differ.
"""

from __future__ import annotations

from typing import ClassVar, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..capture import capture_target
from ..functional.relative_position import absolute_offset_index, gather_bias
from ..functional.windows import merge_windows, partition_windows, shifted_window_mask
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    ConvBN,
    SizeBound,
    attention,
    check_arg,
    check_nchw,
    fx_leaf,
    odd_kernel,
    positive_int,
)
from ..layers.checks import check_attention_args
from ..registry import register
from ..tracing import traced_size

__all__ = ["CascadedGroupAttention", "window_depthwise", "window_attention"]


def window_depthwise(t: torch.Tensor, conv: nn.Conv2d, window: int) -> torch.Tensor:
    """A depthwise conv (``conv``, 'same' zero padding p = k // 2) applied inside each w×w window of t: B×C×H×W,
    as if every window (cut at the map's border) were a map of its own.

    The windows are laid out with p zero columns and rows after each one (B×C·nh×w×nw×w, padded, at most 5
    axes) and one conv runs on that spaced map: a window never reads its neighbour (the official code folds the
    windows into the batch instead, which ncnn cannot do)."""
    h, w = traced_size(t)
    if h <= window and w <= window:  # one window: the conv itself
        return conv(t)
    b, c = t.shape[0], t.shape[1]
    p = conv.kernel_size[0] // 2
    ph, pw = (window - h % window) % window, (window - w % window) % window
    nh, nw = (h + ph) // window, (w + pw) // window
    s = F.pad(t, (0, pw, 0, ph)).reshape(b, c * nh, window, nw, window)
    s = F.pad(s, (0, p, 0, 0, 0, p)).reshape(b, c, nh * (window + p), nw * (window + p))
    s = conv(s).reshape(b, c * nh, window + p, nw, window + p)
    s = s[:, :, :window, :, :window].reshape(b, c, nh * window, nw * window)
    return s[:, :, :h, :w] if ph or pw else s


def window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor,
    window: int,
    scale: float,
    module: nn.Module | None,
) -> torch.Tensor:
    """Single-head attention of q, k (B×d_k×H×W) and v (B×d_v×H×W) inside w×w windows with an additive L×L
    ``bias`` (L = w²); the map is zero-padded to whole windows and padded keys are masked with the dtype's most
    negative finite value.  B×d_v×H×W out.  Windows on their own axis (at most 5 axes, batch never folded)."""
    h, w = traced_size(q)
    ph, pw = (window - h % window) % window, (window - w % window) % window
    hp, wp = h + ph, w + pw
    nh, nw = hp // window, wp // window
    g = nh * nw
    if ph or pw:
        q, k, v = (F.pad(t, (0, pw, 0, ph)) for t in (q, k, v))
        mask = (bias[None] + shifted_window_mask(hp, wp, h, w, window, 0, q.dtype, q.device))[None]
    else:
        mask = bias.expand(g, -1, -1)[None]
    tq, tk, tv = (partition_windows(t, window) for t in (q, k, v))  # B×G×L×d
    out = attention(tq, tk, tv, mask=mask, scale=scale, module=module)
    out = merge_windows(out, window, nh, nw)
    return out[:, :, :h, :w] if ph or pw else out


@fx_leaf
def _cascade(
    x: torch.Tensor,
    qkvs: nn.ModuleList,
    dws: nn.ModuleList,
    table: torch.Tensor,
    window: int,
    d_k: int,
    owner: nn.Module | None,
) -> torch.Tensor:
    """The cascade over the heads: B×C×H×W → B×C×H×W (before the projection)."""
    heads = len(qkvs)
    d_v = x.shape[1] // heads
    index = absolute_offset_index(window, window, window, x.device)
    biases = gather_bias(table, index, heads_first=True).to(x.dtype)  # heads×L×L
    outs: list[torch.Tensor] = []
    for i, (chunk, qkv, dw) in enumerate(zip(x.chunk(heads, dim=1), qkvs, dws)):
        feat = chunk if i == 0 else chunk + outs[-1]
        q, k, v = qkv(feat).split([d_k, d_k, d_v], dim=1)
        dw = cast(ConvBN, dw)
        q = dw.bn(window_depthwise(q, dw.conv, window))
        outs.append(window_attention(q, k, v, biases[i], window, d_k**-0.5, owner))
    return torch.cat(outs, dim=1)


@register(
    "cascaded_group_attention",
    family="self_attention",
    paper="EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention (Liu et al.; CVPR 2023)",
    url="https://arxiv.org/abs/2305.07027",
    complexity="O(N·w^2)",
    summary="EfficientViT cascaded group attention in w×w windows: each head attends one channel group plus the "
    "previous head's output; |Δ|-offset bias, zero-init output BN; padded keys masked, any H×W.",
    test_kwargs={"heads": 2, "d_k": 4, "window_size": 3, "kernel_size": 3},
    maps=("attn",),
)
class CascadedGroupAttention(AttnModule):
    """EfficientViT (Liu et al.) cascaded group attention in local windows; B×C×H×W → B×C×H×W.

    x is split into ``heads`` channel groups x_i; head i takes ``f_i = x_i + out_{i−1}`` (``f_0 = x_0``), a 1×1
    ConvBN gives q, k (``d_k`` channels) and v (C / heads), q goes through a depthwise ``kernel_size`` ConvBN,
    and ``out_i = v · softmax(qᵀk / √d_k + B_i)ᵀ`` inside ``window_size``×``window_size`` windows, with the bias
    B_i[|Δy|, |Δx|] from a learned heads×w² table (zero init).  ``out = ConvBN(ReLU(cat(out_i)))`` with the BN
    weight 0: the module returns 0 at init (EfficientViT adds it to a residual).  No residual inside.

    Any H×W: the map is zero-padded to whole windows, padded keys are masked with the dtype's most negative
    finite value, and the depthwise conv on q sees zeros beyond the map, so a border window computes as the
    window cut to the map.  The bias is gathered on every call (the official code caches it in eval mode, stale
    after a ``load_state_dict``; timm caches it per device).  State-dict keys are timm's
    ``CascadedGroupAttention``'s (``qkvs.i``, ``dws.i``, ``proj.1``, ``attention_biases``).

    Args:
        channels: C (a multiple of ``heads``).
        heads: attention heads (channel groups).
        d_k: width of queries and keys per head.
        window_size: w.
        kernel_size: k of the depthwise conv on q (odd).

    Captured map: ``"attn"`` B×windows×w²×w² per head (the last head's, under one key).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "window_size": SizeBound(32, "w⁴ attention logits per window"),
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self, channels: int, heads: int = 4, d_k: int = 16, window_size: int = 7, kernel_size: int = 5
    ) -> None:
        super().__init__()
        owner = self.owner
        check_attention_args(owner, channels, heads)
        positive_int(d_k, owner, "d_k")
        positive_int(window_size, owner, "window_size")
        check_arg(window_size <= 32, owner, "window_size", "at most 32 (w⁴ attention logits per window)", window_size)
        odd_kernel(kernel_size, owner)
        self.channels, self.heads, self.d_k, self.window_size, self.kernel_size = (
            channels, heads, d_k, window_size, kernel_size,
        )  # fmt: skip
        self.d_v = channels // heads
        self.qkvs = nn.ModuleList(ConvBN(self.d_v, 2 * d_k + self.d_v, act=False) for _ in range(heads))
        self.dws = nn.ModuleList(ConvBN(d_k, d_k, kernel_size, groups=d_k, act=False) for _ in range(heads))
        self.proj = nn.Sequential(nn.ReLU(), ConvBN(channels, channels, act=False, bn_weight_init=0.0))
        self.attention_biases = nn.Parameter(torch.zeros(heads, window_size * window_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        out = _cascade(x, self.qkvs, self.dws, self.attention_biases, self.window_size, self.d_k, capture_target(self))
        return self.proj(out)
