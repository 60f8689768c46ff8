"""EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional Neural Network (Zhang, Zu, Lu, Zou, Meng;
ACCV 2022), its pyramid split attention (PSA) module.  Paper: https://arxiv.org/abs/2105.14447
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..functional.gating import spatial_mean
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_choice,
    check_nchw,
    hidden_width,
    inplace_ok,
    odd_kernel,
    positive_int,
)
from ..registry import register

__all__ = ["EPSA"]


class SEWeight(nn.Module):
    """EPSANet's ``SEWeightModule``: σ(fc₂ ReLU(fc₁ GAP(·))), 1×1 convs with biases; it returns the weight only."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """σ(fc₂ ReLU(fc₁ s)) on pooled vectors s (…×C), as ``F.linear`` on the 1×1 conv weights."""
        h = torch.relu(F.linear(s, self.fc1.weight.flatten(1), self.fc1.bias))
        return torch.sigmoid(F.linear(h, self.fc2.weight.flatten(1), self.fc2.bias))


@register(
    "epsa",
    family="channel",
    paper="EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional Neural Network (Zhang, Zu, Lu, "
    "Zou, Meng; ACCV 2022)",
    url="https://arxiv.org/abs/2105.14447",
    complexity="O(N)",
    summary="Pyramid of grouped convs (k 3/5/7/9) on C/4 channels each, SE weights softmaxed across the branches.",
    maps=("branch_weights",),
    test_kwargs={"groups": (1, 2, 4, 4), "reduction": 1},  # C/4 = 4 channels per branch at the tests' C = 16
)
class EPSA(AttnModule):
    """EPSANet pyramid split attention (PSA module); B×C×H×W → B×C×H×W.

    S = ``len(kernels)`` branches ``F_i = Conv_{k_i}(x)`` (C → C/S each, groups g_i, no bias, no norm); SE weights
    ``Z_i = σ(fc₂ ReLU(fc₁ GAP(F_i)))`` (hidden (C/S)/``reduction``, biases); ``a_i = softmax_i(Z_i)`` across the
    branches (they sum to 1 per channel); ``y = Cat(a_i ⊙ F_i)``.  Official defaults: kernels (3, 5, 7, 9), groups
    (1, 4, 8, 16), reduction 16, one SE shared by the branches, and the official code's concatenation order, the
    last branch first (``order="official"``: the 9×9 branch is channel block 0); ``order="paper"`` is the paper's
    Cat([Y_0, …, Y_{S−1}]), ``shared_se=False`` one SE per branch.  The order is a channel permutation, which
    the 1×1 conv after PSA in EPSANet's block absorbs; it matters for loading the official weights.

    C must split into S equal branches whose widths C/S the groups divide (default: C a multiple of 64), else
    ``ValueError`` naming the rule.  Hidden width max((C/S) // reduction, 1) (the official ``//`` without a floor
    gives 0 below 16 channels per branch).  See docs/provenance/epsa.md for External-Attention's copy.

    Args:
        channels: input (and output) channels C.
        kernels: odd kernel sizes of the S branches.
        groups: conv groups of each branch (one per kernel).
        reduction: SE reduction r on the C/S branch width.
        shared_se: one SE for all branches (official) or one per branch.
        order: ``"official"`` (last branch first) or ``"paper"`` (first branch first).

    Captured map: ``"branch_weights"`` B×S×(C/S)×1×1 in branch order (kernels order), summing to 1 over S.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernels": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self,
        channels: int,
        kernels: Sequence[int] = (3, 5, 7, 9),
        groups: Sequence[int] = (1, 4, 8, 16),
        reduction: float = 16,
        shared_se: bool = True,
        order: str = "official",
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        check_arg(
            isinstance(kernels, (list, tuple)) and len(kernels) >= 1, owner, "kernels", "a non-empty sequence", kernels
        )
        kernels = tuple(odd_kernel(k, owner, "each kernel in kernels") for k in kernels)
        s = len(kernels)
        check_arg(
            isinstance(groups, (list, tuple)) and len(groups) == s,
            owner,
            "groups",
            f"one group count per kernel ({s})",
            groups,
        )
        groups = tuple(positive_int(g, owner, "each of groups") for g in groups)
        check_arg(
            channels % s == 0, owner, "channels", f"a multiple of the number of branches len(kernels)={s}", channels
        )
        width = channels // s
        for g in groups:
            check_arg(
                width % g == 0,
                owner,
                "channels",
                f"a value whose branch width channels/{s} every branch's groups {groups} divide "
                f"(a multiple of {s}·lcm(groups))",
                channels,
            )
        hidden = hidden_width(width, reduction, None, 1, owner)
        self.order = check_choice(order, ("official", "paper"), owner, "order")
        self.channels, self.kernels, self.groups, self.reduction = channels, kernels, groups, reduction
        self.shared_se = bool(shared_se)
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, width, k, padding=k // 2, groups=g, bias=False) for k, g in zip(kernels, groups)
        )
        self.se: nn.Module = (
            SEWeight(width, hidden) if shared_se else nn.ModuleList(SEWeight(width, hidden) for _ in kernels)
        )

    def branch_weights(self, branches: list[torch.Tensor]) -> torch.Tensor:
        """Softmax over the branches of their SE weights, B×S×(C/S), in kernel order."""
        pooled = torch.stack([spatial_mean(f, portable_form=False) for f in branches], dim=1)  # B×S×C/S
        if isinstance(self.se, nn.ModuleList):
            z = torch.stack([se(pooled[:, i]) for i, se in enumerate(self.se)], dim=1)
        else:
            z = self.se(pooled)
        return z.softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        branches = [conv(x) for conv in self.convs]
        a = self.branch_weights(branches)
        record(self, "branch_weights", a[:, :, :, None, None])
        idx = range(len(branches) - 1, -1, -1) if self.order == "official" else range(len(branches))
        feats = torch.cat([branches[i] for i in idx], dim=1)  # official: the last branch first
        w = torch.cat([a[:, i] for i in idx], dim=1)[:, :, None, None]
        return feats.mul_(w) if inplace_ok() else feats * w
