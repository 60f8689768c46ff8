"""BAM: Bottleneck Attention Module (Park, Woo, Lee, Kweon; BMVC 2018).

Paper: https://arxiv.org/abs/1807.06514
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import is_capturing, record
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    check_choice,
    check_nchw,
    hidden_width,
    init_weights,
    inplace_ok,
    positive_int,
)
from ..layers.batchnorm import PooledBatchNorm1d, PooledBatchNorm2d
from ..registry import register

__all__ = ["BAM"]


@register(
    "bam",
    family="spatial",
    paper="BAM: Bottleneck Attention Module (Park, Woo, Lee, Kweon; BMVC 2018)",
    url="https://arxiv.org/abs/1807.06514",
    complexity="O(N)",
    summary="Channel MLP and dilated-conv spatial branch summed into one 3-D map; y = x·(1 + σ(Mc + Ms)).",
    maps=("channel", "spatial"),
)
class BAM(AttnModule):
    """BAM; B×C×H×W → B×C×H×W (H×W kept at every size).

    ``Mc = FC(ReLU(BN1d(FC(GAP(x)))))`` (C → C/r → C), ``Ms = conv1×1(ReLU(BN(conv3×3_d(ReLU(BN(conv3×3_d(
    ReLU(BN(conv1×1(x))))))))))`` (C → C/r, two 3×3 convs with dilation d = 4 and padding d, → 1 map) and
    ``y = x ⊙ (1 + σ(Mc + Ms))`` (paper Eq. 1-2; ``fusion="mul"`` is the official code's ``Mc · Ms``).  Official
    widths (hidden C // r, floored at ``min_hidden``) and init (convs Kaiming fan-out, biases 0); the layers
    followed by a BatchNorm have no bias (the official ones are redundant: zero gradient in training).  The BN1d on the pooled vector cannot see batch statistics at batch 1: in training with B = 1 it uses its
    running statistics (see :class:`PooledBatchNorm1d`).  See docs/provenance/bam.md.

    Args:
        channels: input channels C.
        reduction: r (16).
        hidden_channels: explicit hidden width (overrides ``reduction``).
        min_hidden: floor of the hidden width (1: the official C // r for C ≥ r).
        dilation: dilation (and padding) of the two 3×3 convs (4).
        fusion: ``"add"`` (paper: σ(Mc + Ms)) or ``"mul"`` (official code: σ(Mc · Ms)).

    Captured maps: ``"channel"`` Mc B×C×1×1 and ``"spatial"`` Ms B×1×H×W (before the sigmoid).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "dilation": SizeBound(KERNEL_BOUND, "dilation: the padding grows with it"),
    }

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        hidden_channels: int | None = None,
        min_hidden: int = 1,
        dilation: int = 4,
        fusion: str = "add",
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, min_hidden, self.owner)
        self.channels, self.reduction = channels, reduction
        self.dilation = positive_int(dilation, self.owner, "dilation")
        self.fusion = check_choice(fusion, ("add", "mul"), self.owner, "fusion")
        # channel branch (official ChannelGate, one hidden layer)
        self.channel_fc1 = nn.Linear(channels, hidden, bias=False)
        self.channel_bn = PooledBatchNorm1d(hidden)
        self.channel_fc2 = nn.Linear(hidden, channels)
        # spatial branch (official SpatialGate: 1×1 reduce, two dilated 3×3, 1×1 to one map)
        self.spatial_reduce = nn.Conv2d(channels, hidden, 1, bias=False)
        self.spatial_bn0 = PooledBatchNorm2d(hidden)
        self.spatial_conv1 = nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation, bias=False)
        self.spatial_bn1 = PooledBatchNorm2d(hidden)
        self.spatial_conv2 = nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation, bias=False)
        self.spatial_bn2 = PooledBatchNorm2d(hidden)
        self.spatial_out = nn.Conv2d(hidden, 1, 1)
        # the official ResNet builder: convs Kaiming (fan-out), Linears PyTorch's default, every bias 0
        init_weights(
            self, {nn.Conv2d: lambda m: nn.init.kaiming_normal_(m.weight, mode="fan_out"), nn.Linear: lambda m: None}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        mc = self.channel_fc2(F.relu(self.channel_bn(self.channel_fc1(x.mean((2, 3))))))[:, :, None, None]
        s = F.relu(self.spatial_bn0(self.spatial_reduce(x)))
        s = F.relu(self.spatial_bn1(self.spatial_conv1(s)))
        s = F.relu(self.spatial_bn2(self.spatial_conv2(s)))
        ms = self.spatial_out(s)
        record(self, "channel", mc)
        record(self, "spatial", ms)
        t = (mc + ms if self.fusion == "add" else mc * ms).sigmoid_()  # the full B×C×H×W map σ(Mc ∘ Ms)
        if inplace_ok() and not is_capturing(self):
            return t.add_(1.0).mul_(x)
        return x + x * t  # x·(1 + σ) (not addcmul: ncnn has none; and its backward is slower)
