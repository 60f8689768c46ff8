"""Strip Pooling: Rethinking Spatial Pooling for Scene Parsing (Hou, Zhang, Cheng, Feng; CVPR 2020).

Paper: https://arxiv.org/abs/2003.13328.  Official code: houqb/SPNet (MIT; ``models/resnet.py`` ``SPBlock``,
``models/customize.py`` ``StripPooling``), read and re-written here.  See docs/provenance/strip_pooling.md and
docs/provenance/mixed_pooling.md.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..functional.pooling import EXACT_POOL_FORM, adaptive_pool2d
from ..layers import (
    TABLE_BOUND,
    AttnModule,
    Gate,
    SizeBound,
    check_arg,
    check_nchw,
    hidden_width,
    positive_int,
    traced_size,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register

__all__ = ["StripPooling", "MixedPooling"]

_PAPER = "Strip Pooling: Rethinking Spatial Pooling for Scene Parsing (Hou, Zhang, Cheng, Feng; CVPR 2020)"
_URL = "https://arxiv.org/abs/2003.13328"


def _conv_bn(c_in: int, c_out: int, kernel: tuple[int, int], relu: bool = False) -> nn.Sequential:
    """SPNet's ``Conv2d(bias=False, 'same' padding) → BatchNorm2d (→ ReLU)`` (state-dict keys ``0.*``, ``1.*``)."""
    padding = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False), PooledBatchNorm2d(c_out)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def strip_sum(x: torch.Tensor, rows: nn.Module, cols: nn.Module) -> torch.Tensor:
    """``expand(rows(mean_W x)) + expand(cols(mean_H x))``: the two strip branches (a 3×1 conv over the row means
    B×C×H×1, a 1×3 conv over the column means B×C×1×W) summed by broadcasting to B×C'×H×W.

    The official code expands each strip to H×W (SPBlock) or bilinearly resizes it with ``align_corners=True``
    (StripPooling); from a size-1 axis both are the broadcast.
    """
    return rows(x.mean(3, keepdim=True)) + cols(x.mean(2, keepdim=True))


@register(
    "strip_pooling",
    family="spatial",
    paper=_PAPER,
    url=_URL,
    complexity="O(N)",
    summary="SPNet strip pooling gate: row and column means → 3×1 / 1×3 conv + BN, broadcast sum → ReLU → 1×1 "
    "conv → sigmoid; each position sees its row and its column.",
    maps=("gate",),
)
class StripPooling(Gate):
    """SPNet's strip pooling module (SPM, the official ``SPBlock``) as a gate; B×C×H×W → B×C×H×W.

    ``g = σ(Conv₁ₓ₁(ReLU(expand(BN(Conv₃ₓ₁(mean_W x))) + expand(BN(Conv₁ₓ₃(mean_H x))))))`` and ``y = x ⊙ g``
    (the official ResNet's ``out * spm(out)``).  As the official block: no reduction (the strip convs keep C
    channels, no bias), the 1×1 conv has a bias; PyTorch's default init.  The gate at (i, j) depends on the
    input only through rows i−1..i+1 and columns j−1..j+1 (the strip convs have 3 taps); in eval mode a pixel
    changes the gate only on its row band and its column band.

    Args:
        channels: input channels C.

    Captured map: ``"gate"`` B×C×H×W.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        self.rows = _conv_bn(channels, channels, (3, 1))
        self.cols = _conv_bn(channels, channels, (1, 3))
        self.fuse = nn.Conv2d(channels, channels, 1)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×H×W."""
        return torch.sigmoid(self.fuse(F.relu(strip_sum(x, self.rows, self.cols))))


def pyramid_branch(x: torch.Tensor, size: int, conv: nn.Module) -> torch.Tensor:
    """Exact adaptive average pooling to size×size, the 3×3 conv + BN, bilinear (``align_corners=True``) back to
    x's size, as the official ``F.interpolate(conv(AdaptiveAvgPool2d(size)(x)), (h, w), **up_kwargs)``."""
    h, w = traced_size(x)
    return F.interpolate(conv(adaptive_pool2d(x, size, "avg")), (h, w), mode="bilinear", align_corners=True)


@register(
    "mixed_pooling",
    family="spatial",
    paper=_PAPER,
    url=_URL,
    complexity="O(N)",
    summary="SPNet mixed pooling module: a 3×3 conv and a 20/12 pyramid pooling branch, a strip pooling branch, "
    "fused by 1×1 conv + BN; out = ReLU(x + ·); exact adaptive pooling in every runtime.",
    test_kwargs={"pool_sizes": (5, 3)},
    forms=(EXACT_POOL_FORM,),
)
class MixedPooling(AttnModule):
    """SPNet's mixed pooling module (MPM, the official ``StripPooling`` head block); B×C×H×W → B×C×H×W.

    Two 1×1 ConvBN-ReLU reductions to C' = C/4 give x₁ and x₂.  Short-range branch:
    ``a = ConvBNReLU₃ₓ₃(ReLU(ConvBN₃ₓ₃ x₁ + Σ_s up(ConvBN₃ₓ₃(pool_s x₁))))`` over the pyramid ``pool_sizes``
    (20, 12: adaptive average pooling, bilinear ``align_corners=True`` upsampling).  Long-range branch:
    ``b = ConvBNReLU₃ₓ₃(ReLU(expand(ConvBN₁ₓ₃(mean_H x₂)) + expand(ConvBN₃ₓ₁(mean_W x₂))))``.
    ``out = ReLU(x + BN(Conv₁ₓ₁[a, b]))``.

    The pyramid pools use PyTorch's exact adaptive bins in every runtime (20 and 12 rarely divide the map:
    the upstream copies fail ONNX export there or swap in fixed-kernel pools with other bins); maps smaller
    than a pool size are pooled up as PyTorch does (bins of one element).

    Args:
        channels: input channels C.
        pool_sizes: output sizes of the pyramid poolings (official (20, 12)).
        reduction: C' = C // reduction (official 4; at least 1).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "pool_sizes": SizeBound(TABLE_BOUND, "pooled side"),
    }

    def __init__(self, channels: int, pool_sizes: Sequence[int] = (20, 12), reduction: float = 4) -> None:
        super().__init__()
        owner = self.owner
        self.channels = positive_int(channels, owner, "channels")
        ok = isinstance(pool_sizes, (tuple, list)) and len(pool_sizes) >= 1
        check_arg(ok, owner, "pool_sizes", "a non-empty sequence of positive integers", pool_sizes)
        for s in pool_sizes:
            positive_int(s, owner, "pool_sizes")
        self.pool_sizes = tuple(pool_sizes)
        self.reduction = reduction
        inter = hidden_width(channels, reduction, None, 1, owner)
        self.reduce_short = _conv_bn(channels, inter, (1, 1), relu=True)
        self.reduce_long = _conv_bn(channels, inter, (1, 1), relu=True)
        self.local = _conv_bn(inter, inter, (3, 3))
        self.pyramid = nn.ModuleList(_conv_bn(inter, inter, (3, 3)) for _ in self.pool_sizes)
        self.strip_w = _conv_bn(inter, inter, (1, 3))  # on the column means (1×W strip)
        self.strip_h = _conv_bn(inter, inter, (3, 1))  # on the row means (H×1 strip)
        self.fuse_short = _conv_bn(inter, inter, (3, 3), relu=True)
        self.fuse_long = _conv_bn(inter, inter, (3, 3), relu=True)
        self.proj = _conv_bn(2 * inter, channels, (1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        x1 = self.reduce_short(x)
        x2 = self.reduce_long(x)
        short = self.local(x1)
        for size, conv in zip(self.pool_sizes, self.pyramid):
            short = short + pyramid_branch(x1, size, conv)
        a = self.fuse_short(F.relu(short))
        b = self.fuse_long(F.relu(strip_sum(x2, self.strip_h, self.strip_w)))
        return F.relu(x + self.proj(torch.cat([a, b], dim=1)))
