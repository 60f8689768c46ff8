"""SHViT's single-head self-attention (SHSA): global attention on a quarter of the channels.

Paper: SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design (Yun, Ro; CVPR 2024),
https://arxiv.org/abs/2401.16456.  Official code: ysj9909/SHViT (MIT); timm ``shvit.SHSA`` (Apache-2.0) is the
parity oracle and has the same state-dict keys.  Written from the paper; docs/provenance/shsa.md.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from ..capture import capture_target
from ..layers import AttnModule, attention, check_arg, check_nchw, positive_int
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register

__all__ = ["SingleHeadSelfAttention"]


def conv_bn(cin: int, cout: int, bn_weight: float = 1.0) -> nn.Sequential:
    """1×1 conv (no bias) + BatchNorm with the keys ``c`` and ``bn`` (SHViT's ``Conv2d_BN``)."""
    bn = PooledBatchNorm2d(cout)
    nn.init.constant_(bn.weight, bn_weight)
    return nn.Sequential(OrderedDict(c=nn.Conv2d(cin, cout, 1, bias=False), bn=bn))


@register(
    "shsa",
    family="self_attention",
    paper="SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design (Yun, Ro; CVPR 2024)",
    url="https://arxiv.org/abs/2401.16456",
    complexity="O(N^2)",
    summary="SHViT single-head attention over all positions on the first C/4 channels (GroupNorm, q/k width 16); "
    "the rest passes through; ReLU + 1×1 ConvBN (zero init) on the concatenation.",
    test_kwargs={"qk_channels": 4},
    maps=("attn",),
)
class SingleHeadSelfAttention(AttnModule):
    """SHViT single-head self-attention; B×C×H×W → B×C×H×W.

    ``x1, x2 = split(x, [p, C − p])``; ``x1 = GN(x1)`` (GroupNorm, one group); ``q, k, v = ConvBN(x1)`` (1×1:
    ``qk_channels``, ``qk_channels``, p); ``x1 = v · softmax(qᵀk / √qk_channels)ᵀ`` over all H·W positions (one
    head); ``out = ConvBN(ReLU(cat(x1, x2)))`` with the BN weight 0 (the module returns 0 at init; SHViT adds it
    to a residual).  x2 reaches the output only pointwise.  No residual inside.

    Args:
        channels: C.
        qk_channels: width of the single query and key (SHViT: 16).
        partial_channels: p, the attended channels; ``None`` = C // 4 (SHViT's ratio), at least 1.

    Captured map: ``"attn"`` B×1×N×N.
    """

    def __init__(self, channels: int, qk_channels: int = 16, partial_channels: int | None = None) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        positive_int(qk_channels, owner, "qk_channels")
        p = (
            max(1, channels // 4)
            if partial_channels is None
            else positive_int(partial_channels, owner, "partial_channels")
        )
        check_arg(p <= channels, owner, "partial_channels", f"at most channels ({channels})", partial_channels)
        self.channels, self.qk_channels, self.partial_channels = channels, qk_channels, p
        self.pre_norm = nn.GroupNorm(1, p)
        self.qkv = conv_bn(p, 2 * qk_channels + p)
        self.proj = nn.Sequential(nn.ReLU(), conv_bn(channels, channels, bn_weight=0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, _, h, w = x.shape
        p, d = self.partial_channels, self.qk_channels
        x1, x2 = x.split([p, self.channels - p], dim=1)
        q, k, v = self.qkv(self.pre_norm(x1)).flatten(2).transpose(1, 2).split([d, d, p], dim=-1)  # B×N×·
        y = attention(q[:, None], k[:, None], v[:, None], scale=d**-0.5, module=capture_target(self))
        y = y[:, 0].transpose(1, 2).reshape(b, p, h, w)
        return self.proj(torch.cat([y, x2], dim=1))
