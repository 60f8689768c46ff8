"""Contextual Transformer Networks (CoTNet; Li, Yao, Pan, Mei; TPAMI 2022).  Paper: https://arxiv.org/abs/2107.12292

The official code runs its local aggregation in a CuPy CUDA kernel; here it is
:func:`attnzoo.functional.local_aggregation` (k² shifted products), on any device and exportable.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.fx
import torch.nn as nn

from ..capture import is_capturing, record
from ..functional import (
    local_aggregation,
)
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_nchw,
    odd_kernel,
    positive_int,
    renamed_args,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register
from ..tracing import PortableForm, portable

__all__ = ["ContextualTransformer"]

#: The export targets that take the portable form (:func:`_aggregate_4d`).
_TARGETS: tuple[str, ...] = ("ncnn",)


def _aggregate_4d(v: torch.Tensor, w: torch.Tensor, groups: int, kernel_size: int) -> torch.Tensor:
    """:func:`attnzoo.functional.local_aggregation` with at most 4 axes (the portable form; ncnn has at most 4
    besides the batch): v B×C×H×W, w B×(G·k²)×H×W (the kernel generator's output, group-major) → B×C×H×W."""
    b, c, h, wd = v.shape
    k2, p = kernel_size * kernel_size, kernel_size // 2
    vp = nn.functional.pad(v, (p, p, p, p))
    wk = w.reshape(b, groups, k2, h * wd).permute(0, 2, 1, 3)  # B×k²×G×(H·W)
    out = None
    for idx in range(k2):
        i, j = divmod(idx, kernel_size)
        term = vp[:, :, i : i + h, j : j + wd].reshape(b, c // groups, groups, h * wd) * wk[:, idx : idx + 1]
        out = term if out is None else out + term
    assert out is not None
    return out.reshape(b, c, h, wd)


@register(
    "cot",
    family="self_attention",
    paper="Contextual Transformer Networks for Visual Recognition (Li, Yao, Pan, Mei; TPAMI 2022)",
    url="https://arxiv.org/abs/2107.12292",
    complexity="O(N)",
    summary="Static k×k context keys + dynamic k×k local aggregation of values, fused by radix-2 split attention.",
    maps=("kernels", "radix"),
    forms=(
        PortableForm(
            targets=_TARGETS,
            marker="aten::permute",
            reason="the eager local aggregation broadcasts the kernels over the channel groups through 6-axis views; "
            "ncnn has at most 4 axes besides the batch",
            cases=({}, {"kernel_size": 5, "share_planes": 4}),
        ),
    ),
)
class ContextualTransformer(AttnModule):
    """CoT block, the official ``CotLayer`` (Li et al., TPAMI 2022); B×C×H×W → B×C×H×W.

    1. Static context: ``K1 = ReLU(BN(Conv_k×k(x, groups=key_groups)))``.
    2. Dynamic kernels from ``[x; K1]``: ``Conv1×1(2C → C/factor) → BN → ReLU → Conv1×1(→ k²·G) → GroupNorm(G)``
       with G = C / share_planes, viewed as B×G×k²×H×W (no softmax); channel c uses kernel ``c mod G``.
    3. Values ``V = BN(Conv1×1(x))``; ``K2 = Swish(BN(LocalAggregation(V, kernels)))`` (k×k, zero padded).
    4. Radix-2 split attention: ``a = softmax_radix(Conv1×1(ReLU(BN(Conv1×1(GAP(K1 + K2))))))`` with
       ``max(2C / reduction, min_hidden)`` hidden channels; the 2C logits are read as C×2
       (logit 2c → K2, 2c+1 → K1, as the official ``view(B, C, radix)``); ``y = a₀ ⊙ K2 + a₁ ⊙ K1``.

    There is no residual inside (in CoTNet the layer replaces the bottleneck's 3×3 conv).  Convolutions are
    Kaiming-normal (fan-out) initialised, BN/GN (1, 0), as the timm-based official ResNet.

    Differences from the community ``CoTAttention`` (External-Attention): that one has no GroupNorm or channel
    sharing (k²·C kernel channels), averages the kernels over the k² positions and softmaxes over all H·W
    positions, so it performs no local aggregation at all; it fuses with a plain ``K1 + K2`` (no BN+Swish, no
    split attention) and concatenates ``[K1, x]``.  Here the official computation is kept exactly.

    Args:
        channels: C; divisible by ``key_groups`` and by ``share_planes``.
        kernel_size: odd k of the key conv and of the local aggregation (official 3).
        key_groups: groups of the k×k key conv (official 4; CoXt uses 8).
        share_planes: channels sharing one dynamic kernel is C / G with G = C / share_planes (official 8).
        factor: hidden width of the kernel generator is C / factor (official 2).
        reduction: split-attention hidden width 2C / reduction (official 4; formerly ``reduction_factor``).
        min_hidden: floor of that width (official 32; formerly ``min_attn_channels``).

    Batch 1 in train(): the BN of the split-attention MLP (on the pooled vector) sees one value per channel; it
    then normalises with its running statistics and does not update them (``PooledBatchNorm2d``); the other
    BNs see H·W values per channel and train as usual.

    Shapes: x B×C×H×W → B×C×H×W.  Captured maps: ``"kernels"`` B×G×k²×H×W (the dynamic kernels) and
    ``"radix"`` B×C×2 (the split-attention weights of K2 and K1).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    @renamed_args(reduction_factor="reduction", min_attn_channels="min_hidden")
    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        key_groups: int = 4,
        share_planes: int = 8,
        factor: int = 2,
        reduction: int = 4,
        min_hidden: int = 32,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        odd_kernel(kernel_size, owner)
        for name, value in (("key_groups", key_groups), ("share_planes", share_planes)):
            positive_int(value, owner, name)
            check_arg(channels % value == 0, owner, "channels", f"divisible by {name}={value}", channels)
        positive_int(factor, owner, "factor")
        check_arg(channels // factor >= 1, owner, "factor", f"at most channels ({channels})", factor)
        positive_int(reduction, owner, "reduction")
        positive_int(min_hidden, owner, "min_hidden")
        c, k = channels, kernel_size
        self.channels, self.kernel_size, self.radix = c, k, 2
        self.kernel_groups = c // share_planes
        self.key_embed = nn.Sequential(
            nn.Conv2d(c, c, k, padding=k // 2, groups=key_groups, bias=False),
            PooledBatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.embed = nn.Sequential(
            nn.Conv2d(2 * c, c // factor, 1, bias=False),
            PooledBatchNorm2d(c // factor),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // factor, k * k * self.kernel_groups, 1),
            nn.GroupNorm(self.kernel_groups, k * k * self.kernel_groups),
        )
        self.conv1x1 = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), PooledBatchNorm2d(c))
        self.bn = PooledBatchNorm2d(c)
        self.act = nn.SiLU(inplace=True)
        attn_chs = max(c * self.radix // reduction, min_hidden)
        self.se = nn.Sequential(
            nn.Conv2d(c, attn_chs, 1),
            PooledBatchNorm2d(attn_chs),  # batch 1 in training: running statistics, not updated
            nn.ReLU(inplace=True),
            nn.Conv2d(attn_chs, self.radix * c, 1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _forward_portable(self, x: torch.Tensor, k1: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        k2 = self.act(self.bn(_aggregate_4d(self.conv1x1(x), w, self.kernel_groups, self.kernel_size)))
        logits = self.se((k1 + k2).mean((2, 3), keepdim=True))  # B×2C×1×1, radix fastest
        attn = logits.reshape(logits.shape[0], self.channels, self.radix, 1).softmax(2)
        return k2 * attn[:, :, 0:1] + k1 * attn[:, :, 1:2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        k1 = self.key_embed(x)
        w = self.embed(torch.cat([x, k1], dim=1))
        if portable(*_TARGETS) and not is_capturing(self):  # the same computation with at most 4 axes
            return self._forward_portable(x, k1, w)
        w = w.unflatten(1, (self.kernel_groups, self.kernel_size * self.kernel_size))  # B×G×k²×H×W
        record(self, "kernels", w)
        k2 = self.act(self.bn(local_aggregation(self.conv1x1(x), w, self.kernel_size)))
        logits = self.se((k1 + k2).mean((2, 3), keepdim=True))
        attn = logits.flatten(1).unflatten(1, (self.channels, self.radix)).softmax(-1)  # B×C×2, radix fastest
        record(self, "radix", attn)
        a = attn[..., None, None]
        return k2 * a[:, :, 0] + k1 * a[:, :, 1]
