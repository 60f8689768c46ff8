"""Axial Attention in Multidimensional Transformers (Ho, Kalchbrenner, Weissenborn, Salimans; arXiv 2019).

Paper: https://arxiv.org/abs/1912.12180; the image form as in Axial-DeepLab (Wang et al.; ECCV 2020,
https://arxiv.org/abs/2003.07853, official code https://github.com/csrhddlam/axial-deeplab): a height-axis
attention layer, then a width-axis one.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..capture import capture_target
from ..functional.windows import grouped_self_attention
from ..layers import (
    AttnModule,
    attention,
    check_nchw,
    fx_leaf,
)
from ..layers.checks import check_attention_args
from ..registry import register
from ..tracing import PortableForm, portable

__all__ = ["AxialAttention", "AxisAttention"]

#: The export targets that take the portable form (:meth:`AxisAttention.grouped`).
_TARGETS: tuple[str, ...] = ("ncnn",)


class AxisAttention(nn.Module):
    """Multi-head self-attention over the L tokens of each sequence in a batch: n×L×C → n×L×C.

    ``to_qkv`` (no bias, q | k | v each heads·dim_head wide), softmax(q kᵀ · dim_head^-½) v per head through the
    fused SDPA kernel, heads concatenated, ``to_out`` (Linear with bias) back to C.
    """

    def __init__(
        self, channels: int, heads: int, dim_head: int, qkv_bias: bool, attn_drop: float, proj_drop: float
    ) -> None:
        super().__init__()
        self.heads, self.dim_head, self.attn_drop = heads, dim_head, attn_drop
        inner = heads * dim_head
        self.to_qkv = nn.Linear(channels, 3 * inner, bias=qkv_bias)
        self.to_out = nn.Linear(inner, channels)
        self.drop = nn.Dropout(proj_drop)

    def forward(self, t: torch.Tensor, owner: nn.Module | None, key: str) -> torch.Tensor:
        n, length, _ = t.shape
        q, k, v = (s.transpose(1, 2) for s in self.to_qkv(t).view(n, length, 3, self.heads, self.dim_head).unbind(2))
        p = self.attn_drop if self.training else 0.0
        o = attention(q, k, v, scale=self.dim_head**-0.5, dropout_p=p, module=owner, key=key)  # n×heads×L×d
        return self.drop(self.to_out(o.transpose(1, 2).reshape(n, length, self.heads * self.dim_head)))

    def grouped(self, t: torch.Tensor, owner: nn.Module | None, key: str) -> torch.Tensor:
        """:meth:`forward` with the sequences on their own axis, B×G×L×C → B×G×L×C (the portable form,
        :func:`~attnzoo.functional.windows.grouped_self_attention`: ncnn has no batch axis to fold G into)."""
        p = self.attn_drop if self.training else 0.0
        attend = functools.partial(attention, module=owner, key=key)
        to_out = lambda o: self.drop(self.to_out(o))  # noqa: E731
        return grouped_self_attention(t, self.to_qkv, to_out, self.heads, self.dim_head**-0.5, None, p, attend)


def _axial_portable(
    x: torch.Tensor, attn_h: AxisAttention, attn_w: AxisAttention, owner: nn.Module | None
) -> torch.Tensor:
    t = attn_h.grouped(x.permute(0, 3, 2, 1), owner, "attn_h")  # B×W×H×C
    t = attn_w.grouped(t.transpose(1, 2), owner, "attn_w")  # B×H×W×C
    return t.permute(0, 3, 1, 2)


@fx_leaf
def _axial(x: torch.Tensor, attn_h: AxisAttention, attn_w: AxisAttention, owner: nn.Module | None) -> torch.Tensor:
    b, c, h, w = x.shape
    if portable(*_TARGETS):  # the same with the other axis kept as its own axis (ncnn cannot fold it into the batch)
        return _axial_portable(x, attn_h, attn_w, owner)
    t = x.permute(0, 3, 2, 1).reshape(b * w, h, c)  # columns: (B·W)×H×C (the width axis folded into the batch)
    t = attn_h(t, owner, "attn_h").view(b, w, h, c)
    t = t.transpose(1, 2).reshape(b * h, w, c)  # rows: (B·H)×W×C
    t = attn_w(t, owner, "attn_w").view(b, h, w, c)
    out = t.permute(0, 3, 1, 2)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return out
    return out.contiguous()


@register(
    "axial",
    family="self_attention",
    paper="Axial Attention in Multidimensional Transformers (Ho et al.; arXiv 2019) / Axial-DeepLab (Wang et al.; ECCV 2020)",
    url="https://arxiv.org/abs/1912.12180",
    complexity="O(N·(H+W))",
    summary="Multi-head self-attention along the height axis (whole columns), then along the width axis (whole rows).",
    test_kwargs={"heads": 2, "dim_head": 4},
    maps=("attn_h", "attn_w"),
    forms=(
        PortableForm(
            targets=_TARGETS,
            marker="aten::chunk",
            reason="the eager form folds the other axis into the batch; ncnn has no batch axis",
        ),
    ),
)
class AxialAttention(AttnModule):
    """Axial attention; B×C×H×W → B×C×H×W.

    ``y = MHA_W(MHA_H(x))``: each layer is multi-head self-attention (q/k/v projections, softmax(q kᵀ/√d) v,
    output projection) over one whole axis, the other axis folded into the batch (4-D SDPA calls, which export
    to ONNX).  After the two layers every position has seen the whole map.  Cost O(N·(H+W)).  No positional
    terms and no residual inside (the host adds them).

    Args:
        channels: C.
        heads: attention heads per axis layer.
        dim_head: width per head (``None`` = C // heads).
        qkv_bias: bias in the q/k/v projections.
        attn_drop: dropout on the attention probabilities; proj_drop: after each output projection.

    Captured maps: ``"attn_h"`` (B·W)×heads×H×H and ``"attn_w"`` (B·H)×heads×W×W.  Differences from the
    community copies: see docs/provenance/axial.md.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        dim_head: int | None = None,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        dim_head, attn_drop, proj_drop = check_attention_args(
            self.owner, channels, heads, dim_head=dim_head, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )
        self.channels, self.heads, self.dim_head = channels, heads, dim_head
        self.attn_h = AxisAttention(channels, heads, dim_head, qkv_bias, attn_drop, proj_drop)
        self.attn_w = AxisAttention(channels, heads, dim_head, qkv_bias, attn_drop, proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        return _axial(x, self.attn_h, self.attn_w, capture_target(self))

    def extra_repr(self) -> str:
        return f"{self.channels}, heads={self.heads}, dim_head={self.dim_head}"
