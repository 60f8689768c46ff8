"""ResNeSt: Split-Attention Networks (Zhang, Wu, Zhang, … Smola; CVPRW 2022), the split-attention conv (Splat).

Paper: https://arxiv.org/abs/2004.08955
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..functional.gating import spatial_mean
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    ConvNormAct,
    SizeBound,
    check_arg,
    check_nchw,
    hidden_width,
    inplace_ok,
    odd_kernel,
    positive_int,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register

__all__ = ["SplitAttention"]


@register(
    "splat",
    family="channel",
    paper="ResNeSt: Split-Attention Networks (Zhang, Wu, Zhang, … Smola; CVPRW 2022)",
    url="https://arxiv.org/abs/2004.08955",
    complexity="O(N)",
    summary="Grouped conv into radix splits, weighted by an r-softmax over the splits from their pooled sum.",
    maps=("radix_weights",),
)
class SplitAttention(AttnModule):
    """ResNeSt split-attention conv (Splat); B×C×H×W → B×C×H×W.

    ``U = ReLU(BN(Conv_k(x)))`` with groups = cardinality·R (C·R channels, R splits of C); ``s = GAP(Σ_r U_r)``;
    ``a = rSoftMax(fc₂(ReLU(BN(fc₁ s))))``, a softmax over the R splits per cardinal group and channel (a sigmoid
    when R = 1); ``y = Σ_r a_r ⊙ U_r``.  fc₁ and fc₂ are grouped (cardinality) 1×1 convs with biases; the conv has
    none (ResNeSt's bottleneck).  Inner width d = max(C·R / ``reduction``, ``min_hidden``) = max(C·R/4, 32), the
    official rule; timm's ``SplitAttn`` rounds C·R/4 to a multiple of 8 (``make_divisible``), so the two differ when
    C·R/4 > 32 is not a multiple of 8 (C = 72, R = 2: 36 here, 40 in timm).  The channel layout of the splits and
    of the r-softmax is the official one (and timm's), so their weights load as they are (key map in the test).

    Batch 1 in train(): the BN of the pooled vector sees one value per channel; it then normalises with its
    running statistics and does not update them (:class:`~attnzoo.layers.batchnorm.PooledBatchNorm2d`).

    Args:
        channels: input (and output) channels C.
        radix: R, the number of splits (R = 1: an SE-like sigmoid gate on the conv's output).
        groups: cardinality (groups of the conv: ``groups·radix``; of fc₁ and fc₂: ``groups``); divides C and d.
        kernel_size: odd kernel of the grouped conv.
        reduction: d = C·R / reduction (official ``reduction_factor`` 4).
        hidden_channels: explicit d.
        min_hidden: floor of d (official 32).

    Captured map: ``"radix_weights"`` B×R×C×1×1 (R = 1: the sigmoid gate).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self,
        channels: int,
        radix: int = 2,
        groups: int = 1,
        kernel_size: int = 3,
        reduction: float = 4,
        hidden_channels: int | None = None,
        min_hidden: int = 32,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        positive_int(radix, owner, "radix")
        positive_int(groups, owner, "groups")
        odd_kernel(kernel_size, owner)
        check_arg(
            channels % (groups * radix) == 0,
            owner,
            "groups",
            f"a value with groups·radix (radix={radix}) dividing channels={channels} (the conv's groups)",
            groups,
        )
        hidden = hidden_width(channels * radix, reduction, hidden_channels, min_hidden, owner, cap_floor=False)
        what = (
            "hidden_channels"
            if hidden_channels is not None
            else f"the inner width {hidden} (max(C·R/reduction, min_hidden))"
        )
        check_arg(hidden % groups == 0, owner, "groups", f"a divisor of {what}", groups)
        self.channels, self.radix, self.groups, self.kernel_size = channels, radix, groups, kernel_size
        self.reduction, self.hidden_channels, self.min_hidden = reduction, hidden_channels, min_hidden
        self.conv = ConvNormAct(
            channels, channels * radix, kernel_size, norm="bn", act="relu", owner=owner, groups=groups * radix
        )
        self.fc1 = nn.Conv2d(channels, hidden, 1, groups=groups)
        self.bn1 = PooledBatchNorm2d(hidden)  # batch 1 in training: running statistics, not updated
        self.act1 = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels * radix, 1, groups=groups)

    def _fc(self, fc: nn.Conv2d, v: torch.Tensor) -> torch.Tensor:
        """A (grouped) 1×1 conv on a B×C×1×1 vector; ``F.linear`` when it has one group (no conv call)."""
        if self.groups == 1:
            return F.linear(v.flatten(1), fc.weight.flatten(1), fc.bias)[:, :, None, None]
        return fc(v)

    def radix_weights(self, u: torch.Tensor) -> torch.Tensor:
        """The split weights from U (B×R·C×H×W): B×R×C (softmax over R), or B×1×C (sigmoid) when R = 1."""
        c, r, g = self.channels, self.radix, self.groups
        s = spatial_mean(u, portable_form=False)  # B×R·C; the mean of the sum of the splits = the sum of their means
        if r > 1:
            s = s.view(-1, r, c).sum(1)
        z = self.act1(self.bn1(self._fc(self.fc1, s[:, :, None, None])))
        logits = self._fc(self.fc2, z).flatten(1)  # B×R·C, laid out (group, split, channel of the group)
        if r == 1:
            return torch.sigmoid(logits)[:, None]
        return logits.view(-1, g, r, c // g).softmax(dim=2).transpose(1, 2).reshape(-1, r, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        u = self.conv(x)
        a = self.radix_weights(u)[:, :, :, None, None]
        record(self, "radix_weights", a)
        if self.radix == 1:
            return u.mul_(a[:, 0]) if inplace_ok() else u * a[:, 0]
        splits = torch.split(u, self.channels, dim=1)
        out = splits[0] * a[:, 0]
        for i in range(1, self.radix):
            out = out.addcmul_(splits[i], a[:, i]) if inplace_ok() else out + splits[i] * a[:, i]  # ncnn: no addcmul
        return out
