"""CloFormer's attention: local AttnConv heads (a tanh context-aware weight on v) and pooled global heads.

Paper: Rethinking Local Perception in Lightweight Vision Transformer (Fan, Huang, Guan, He; arXiv 2023),
https://arxiv.org/abs/2303.17803.  Official code: qhfan/CloFormer ``classification/models/blocks.py``
(``EfficientAttention``), MIT; attnzoo's state-dict keys are its keys.  Written from the paper;
docs/provenance/clo_attention.md lists how the copies differ.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn as nn

from ..capture import capture_target
from ..functional.pooling import EXACT_POOL_FORM, adaptive_pool2d
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
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

__all__ = ["CloAttention"]


class AttnMap(nn.Module):
    """1×1 conv → Swish → 1×1 conv (CloFormer's ``AttnMap``, key ``act_block``)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.act_block = nn.Sequential(nn.Conv2d(width, width, 1), nn.SiLU(), nn.Conv2d(width, width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_block(x)


@fx_leaf
def pooled_global_attention(
    x: torch.Tensor,
    to_q: nn.Module,
    to_kv: nn.Module,
    window: int,
    heads: int,
    dropout_p: float,
    owner: nn.Module | None,
) -> torch.Tensor:
    """The global heads: q from every pixel, k and v from x average-pooled to ⌈H/w⌉×⌈W/w⌉ (PyTorch's exact
    adaptive bins: the official w×w average pooling when w divides H and W); B×(heads·d)×H×W out."""
    b = x.shape[0]
    h, w = traced_size(x)
    q = to_q(x)
    d = q.shape[1] // heads
    kv = x
    if window > 1:
        kv = adaptive_pool2d(x, ((h + window - 1) // window, (w + window - 1) // window))
    kv = to_kv(kv).reshape(b, 2 * heads, d, -1).transpose(-1, -2)  # B×2m×N'×d
    k, v = kv.chunk(2, dim=1)
    q = q.reshape(b, heads, d, -1).transpose(-1, -2)
    out = attention(q, k, v, scale=d**-0.5, dropout_p=dropout_p, module=owner)
    return out.transpose(-1, -2).reshape(b, heads * d, h, w)


@register(
    "clo_attention",
    family="local",
    paper="Rethinking Local Perception in Lightweight Vision Transformer (Fan, Huang, Guan, He; arXiv 2023)",
    url="https://arxiv.org/abs/2303.17803",
    complexity="O(N + N^2/w^2)",
    summary="CloFormer attention: local AttnConv heads (depthwise q, k, v; tanh(AttnMap(q⊙k)) ⊙ v) and global heads "
    "over w×w-pooled keys and values; any H×W (exact adaptive pooling).",
    test_kwargs={"heads": 2, "group_split": (1, 1), "kernels": (3,), "window_size": 2},
    maps=("attn",),
    forms=(EXACT_POOL_FORM,),
)
class CloAttention(AttnModule):
    """CloFormer's attention (``EfficientAttention``); B×C×H×W → B×C×H×W.

    The ``heads`` (head width d = C / heads) are split into groups by ``group_split``: one local group per
    kernel of ``kernels``, then the global group.  Local group (AttnConv) of g heads with kernel k:
    ``q, k, v = DW_k(Conv1×1(x))`` (3·g·d channels, one depthwise conv with bias), ``a = tanh(AttnMap(q ⊙ k) /
    √d)`` with AttnMap = 1×1 → Swish → 1×1, ``y = a ⊙ v``.  Global group of g heads: q = Conv1×1(x), k and v =
    Conv1×1(AvgPool_w(x)), softmax attention per head (scale d^-½).  ``out = Conv1×1(cat(local groups, global
    group))``.  No residual inside (CloFormer's block adds it around a GroupNorm).

    Any H×W: the global keys come from x pooled to ⌈H/w⌉×⌈W/w⌉ with PyTorch's exact adaptive bins (the
    official ``AvgPool2d(w)`` floors and its reshape then fails unless w divides H and W); at sizes that w
    divides the bins are the official w×w windows.

    Args:
        channels: C (a multiple of ``heads``).
        heads: total heads (local + global).
        group_split: heads per group, ``len(kernels) + 1`` non-negative entries summing to ``heads``, the last
            one the global group (0: no global heads).
        kernels: depthwise kernel of each local group (odd).
        window_size: w, the pooling window of the global keys and values (1: no pooling).
        qkv_bias: biases in the q/k/v and output 1×1 convs.
        attn_drop: dropout on the local weights and the global probabilities.
        proj_drop: dropout after the output projection.

    Captured map: ``"attn"`` B×(global heads)×N×N' (when there are global heads).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernels": SizeBound(KERNEL_BOUND, "kernel side"),
        "window_size": SizeBound(KERNEL_BOUND, "window side"),
    }

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        group_split: Sequence[int] = (4, 4),
        kernels: Sequence[int] = (5,),
        window_size: int = 4,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        d, attn_drop, proj_drop = check_attention_args(
            owner, channels, heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )
        check_arg(
            isinstance(kernels, (tuple, list)) and len(kernels) > 0, owner, "kernels", "a non-empty sequence", kernels
        )
        kernels = tuple(odd_kernel(k, owner, "kernels") for k in kernels)
        ok = (
            isinstance(group_split, (tuple, list))
            and len(group_split) == len(kernels) + 1
            and all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in group_split)
            and sum(group_split) == heads
        )
        check_arg(
            ok, owner, "group_split", f"{len(kernels) + 1} non-negative integers summing to heads={heads}", group_split
        )
        positive_int(window_size, owner, "window_size")
        self.channels, self.heads, self.group_split, self.kernels = channels, heads, tuple(group_split), kernels
        self.window_size, self.qkv_bias = window_size, qkv_bias
        self.dim_head = d
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.local_groups = [(g, k) for g, k in zip(group_split[:-1], kernels) if g > 0]
        self.qkvs = nn.ModuleList(nn.Conv2d(channels, 3 * g * d, 1, bias=qkv_bias) for g, _ in self.local_groups)
        self.convs = nn.ModuleList(
            nn.Conv2d(3 * g * d, 3 * g * d, k, 1, k // 2, groups=3 * g * d) for g, k in self.local_groups
        )
        self.act_blocks = nn.ModuleList(AttnMap(g * d) for g, _ in self.local_groups)
        self.global_heads = group_split[-1]
        if self.global_heads:
            self.global_q = nn.Conv2d(channels, self.global_heads * d, 1, bias=qkv_bias)
            self.global_kv = nn.Conv2d(channels, 2 * self.global_heads * d, 1, bias=qkv_bias)
        self.proj = nn.Conv2d(channels, channels, 1, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        res = []
        for to_qkv, mixer, attn_map in zip(self.qkvs, self.convs, self.act_blocks):
            q, k, v = mixer(to_qkv(x)).chunk(3, dim=1)
            res.append(self.attn_drop(torch.tanh(attn_map(q * k) * self.dim_head**-0.5)) * v)
        if self.global_heads:
            res.append(
                pooled_global_attention(
                    x,
                    self.global_q,
                    self.global_kv,
                    self.window_size,
                    self.global_heads,
                    self.attn_drop.p if self.training else 0.0,
                    capture_target(self),
                )
            )
        return self.proj_drop(self.proj(torch.cat(res, dim=1) if len(res) > 1 else res[0]))
