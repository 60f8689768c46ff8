"""Selective Kernel Networks (Li, Wang, Hu, Yang; CVPR 2019).  Paper: https://arxiv.org/abs/1903.06586"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import torch
import torch.nn as nn

from ..capture import record
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    ConvNormAct,
    SizeBound,
    check_arg,
    check_nchw,
    migrate_keys,
    odd_kernel,
    positive_int,
    positive_number,
    renamed_args,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..layers.checks import output_width
from ..registry import ShapeRule, register, strided

__all__ = ["SelectiveKernel"]


@register(
    "sk",
    family="channel",
    paper="Selective Kernel Networks (Li, Wang, Hu, Yang; CVPR 2019)",
    url="https://arxiv.org/abs/1903.06586",
    complexity="O(N)",
    summary="Branches with different receptive fields fused by a softmax over branches (per channel).",
    maps=("branch_weights",),
    shape=ShapeRule("out_channels", strided("stride"), "C → `out_channels`, H×W → ⌈H/`stride`⌉×⌈W/`stride`⌉"),
)
class SelectiveKernel(AttnModule):
    """Selective Kernel convolution; B×C×H×W → B×C_out×⌈H/s⌉×⌈W/s⌉.

    Official SKNet-50 unit: two branches, a grouped 3×3 conv and a grouped 3×3 conv with dilation 2 (the
    paper's "5×5"), each Conv(no bias)+BN+ReLU with stride applied in both; ``s = GAP(U1 + U2)``;
    ``z = ReLU(BN(W s))`` with ``d = max(C/r, L)``, r=16, L=32; one 1×1 conv d → M·C (no bias) and a softmax
    over the M branches; output ``Σ a_m ⊙ U_m`` (no residual).  ``kernels`` are nominal sizes; with
    ``keep_3x3=True`` (official) a kernel k > 3 is a 3×3 conv with dilation (k−1)/2; ``kernels=(1, 3, 5, 7)``
    works too.  Groups default to 32, reduced to a common divisor of the channel counts.

    Args:
        channels: input channels C.
        out_channels: output channels (default C).
        kernels: nominal kernel sizes of the branches (odd), default (3, 5).
        stride: stride of every branch.
        groups: groups of the branch convs (reduced to a divisor of both channel counts).
        reduction: r in d = max(C_out / r, min_hidden).
        min_hidden: L in the same formula (formerly ``min_attn_channels``).
        keep_3x3: express kernels > 3 as dilated 3×3 convs (official).

    Batch 1 in train(): the BN of the pooled vector ``z`` sees one value per channel; it then normalises with
    its running statistics and does not update them (:class:`~attnzoo.layers.batchnorm.PooledBatchNorm2d`);
    the branch BNs train as usual.

    Captured map: ``"branch_weights"`` B×M×C_out×1×1.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernels": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    _version = 2  # v1: branches were nn.Sequential(conv, bn, relu) with keys 0/1/2; v2: ConvNormAct conv/norm/act

    @renamed_args(min_attn_channels="min_hidden")
    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        kernels: Sequence[int] = (3, 5),
        stride: int = 1,
        groups: int = 32,
        reduction: float = 16,
        min_hidden: int = 32,
        keep_3x3: bool = True,
    ) -> None:
        super().__init__()
        owner = self.owner
        out_channels = output_width(channels, out_channels, owner)
        positive_int(stride, owner, "stride")
        positive_int(groups, owner, "groups")
        positive_number(reduction, owner, "reduction")
        positive_int(min_hidden, owner, "min_hidden")
        check_arg(
            isinstance(kernels, (list, tuple)) and len(kernels) >= 2,
            owner,
            "kernels",
            "at least two kernel sizes",
            kernels,
        )
        kernels = tuple(kernels)
        for k in kernels:
            odd_kernel(k, owner, "each kernel in kernels")
        groups = math.gcd(math.gcd(groups, channels), out_channels)
        self.channels, self.out_channels, self.num_paths = channels, out_channels, len(kernels)
        self.kernels, self.stride, self.groups, self.reduction = kernels, stride, groups, reduction
        self.paths = nn.ModuleList()
        for k in kernels:
            ksize, dilation = (3, (k - 1) // 2) if keep_3x3 and k > 3 else (k, 1)
            self.paths.append(
                ConvNormAct(
                    channels,
                    out_channels,
                    ksize,
                    stride,
                    norm="bn",
                    act="relu",
                    owner=owner,
                    dilation=dilation,
                    groups=groups,
                )
            )
        attn = max(int(out_channels / reduction), min_hidden)
        self.fc_reduce = nn.Conv2d(out_channels, attn, 1, bias=False)
        self.bn = PooledBatchNorm2d(attn)  # batch 1 in training: running statistics, not updated
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attn, out_channels * self.num_paths, 1, bias=False)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any], *args: Any
    ) -> None:
        if local_metadata.get("version", 1) < 2:
            migrate_keys(
                state_dict, prefix, {r"^paths\.(\d+)\.0\.": r"paths.\1.conv.", r"^paths\.(\d+)\.1\.": r"paths.\1.norm."}
            )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    def branch_weights(self, branches: list[torch.Tensor]) -> torch.Tensor:
        """Softmax weights over branches, B×M×C_out×1×1."""
        total = branches[0]
        for u in branches[1:]:
            total = total + u
        s = total.mean((2, 3), keepdim=True)
        z = self.act(self.bn(self.fc_reduce(s)))
        logits = self.fc_select(z).view(s.shape[0], self.num_paths, self.out_channels, 1, 1)
        return logits.softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        branches = [path(x) for path in self.paths]
        a = self.branch_weights(branches)
        record(self, "branch_weights", a)
        out = branches[0] * a[:, 0]
        for m in range(1, self.num_paths):
            out = out + branches[m] * a[:, m]
        return out
