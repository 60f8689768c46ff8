"""LambdaNetworks: Modeling Long-Range Interactions Without Attention (Bello; ICLR 2021).

Paper: https://arxiv.org/abs/2102.08602 (no official code; timm's ``LambdaLayer``, Apache-2.0, is the reference
copy and the parity oracle, read, not copied).
"""

from __future__ import annotations

from typing import ClassVar, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_choice,
    check_heads,
    check_nchw,
    odd_kernel,
    positive_int,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..layers.checks import output_width
from ..registry import ShapeRule, register, strided
from .bot_mhsa import stride_pool

__all__ = ["LambdaLayer"]


@register(
    "lambda_layer",
    family="self_attention",
    paper="LambdaNetworks: Modeling Long-Range Interactions Without Attention (Bello; ICLR 2021)",
    url="https://arxiv.org/abs/2102.08602",
    complexity="O(N·r^2)",
    summary="Lambda layer: content lambda (keys softmaxed over positions, times values) plus position lambdas from "
    "a local r×r lambda conv over the values, applied to each query.",
    test_kwargs={"heads": 2, "d_k": 4, "local_size": 3},
    shape=ShapeRule("out_channels", strided("stride"), "C → `out_channels`, H×W → ⌈H/stride⌉×⌈W/stride⌉"),
)
class LambdaLayer(AttnModule):
    """The lambda layer with a local lambda convolution; B×C×H×W → B×out×⌈H/s⌉×⌈W/s⌉.

    One bias-free 1×1 conv gives queries (``heads`` × ``d_k``, BatchNorm), keys (``d_k``, one set shared by the
    heads, softmax over the positions) and values (v = ``out_channels / heads``, BatchNorm): the intra-depth
    u = 1.  The content lambda ``λᶜ = K̄ Vᵀ`` (d_k × v) is shared by every position; the position lambda of
    position n, ``λᵖ_n`` (d_k × v), is an r×r convolution (``local_size``, "same" zero padding, d_k filters with a
    bias, shared by the value channels) over each value channel.  Each head's output at n is
    ``(λᶜ + λᵖ_n)ᵀ q_n``; the heads are concatenated (head-major).  ``stride=2`` average-pools the output 2×2.

    Differences from timm's ``LambdaLayer``: ``out_channels`` ≠ C works (timm reshapes its output with the input
    channels); the lambda conv is a grouped Conv2d over the value channels instead of a Conv3d (same parameters
    up to the trailing kernel axis, no 5-axis conv for the edge runtimes); BatchNorms that also train at batch 1
    on 1×1 maps.  No N×N matrix: cost O(N·r²·d_k·v).

    Args:
        channels: C.
        out_channels: output width (default C), divisible by ``heads``.
        heads: query heads (paper, timm: 4).
        d_k: query / key width per head (paper, timm: 16).
        local_size: r of the lambda convolution (odd; timm 9, the paper's ImageNet models 23).
        stride: 1, or 2 to average-pool the output 2×2 (ceil mode).
        qkv_bias: bias in the q/k/v conv.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "local_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        heads: int = 4,
        d_k: int = 16,
        local_size: int = 9,
        stride: int = 1,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        owner = self.owner
        out = output_width(channels, out_channels, owner)
        check_heads(heads, out, owner, "out_channels", paren=True)
        positive_int(d_k, owner, "d_k")
        odd_kernel(local_size, owner, "local_size")
        check_arg(isinstance(qkv_bias, bool), owner, "qkv_bias", "a bool", qkv_bias)
        self.channels, self.out_channels, self.heads, self.d_k = channels, out_channels, heads, d_k
        self.local_size = local_size
        self.stride = check_choice(stride, (1, 2), owner, "stride")
        self.d_v = out // heads
        self.qkv = nn.Conv2d(channels, heads * d_k + d_k + self.d_v, 1, bias=qkv_bias)
        self.norm_q = PooledBatchNorm2d(heads * d_k)
        self.norm_v = PooledBatchNorm2d(self.d_v)
        self.conv_lambda = nn.Conv2d(1, d_k, local_size, padding=local_size // 2)
        nn.init.trunc_normal_(self.qkv.weight, std=channels**-0.5)  # timm: fan-in std
        nn.init.trunc_normal_(self.conv_lambda.weight, std=d_k**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, _, h, w = x.shape
        heads, dk, dv, n = self.heads, self.d_k, self.d_v, h * w
        q, k, v = self.qkv(x).split((heads * dk, dk, dv), 1)
        q = self.norm_q(q).reshape(b, heads, dk, n)
        v = self.norm_v(v)  # B×v×H×W
        k = k.reshape(b, dk, n).softmax(-1)
        content = k @ v.reshape(b, dv, n).transpose(-1, -2)  # λᶜ: B×k×v
        out = content.transpose(-1, -2).unsqueeze(1) @ q  # B×heads×v×N
        # λᵖ: the same r×r conv (d_k filters) over every value channel, as one grouped conv (channels v-major)
        weight, bias = self.conv_lambda.weight, cast(torch.Tensor, self.conv_lambda.bias)
        pos = F.conv2d(v, weight.repeat(dv, 1, 1, 1), bias.repeat(dv), padding=self.local_size // 2, groups=dv)
        pos = pos.reshape(b, dv, dk, n).permute(0, 3, 2, 1)  # B×N×k×v
        out = out + (q.permute(0, 3, 1, 2) @ pos).permute(0, 2, 3, 1)  # per position: (heads×k) @ (k×v)
        return stride_pool(out.reshape(b, heads * dv, h, w), self.stride)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, out_channels={self.out_channels}, heads={self.heads}, d_k={self.d_k}, "
            f"local_size={self.local_size}, stride={self.stride}"
        )
