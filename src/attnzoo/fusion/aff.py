"""Attentional Feature Fusion (Dai, Gieseke, Oehmcke, Wu, Barnard; WACV 2021).
Paper: https://arxiv.org/abs/2009.14082"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import tracing
from ..capture import record
from ..layers import (
    AttnModule,
    check_arg,
    check_choice,
    check_nchw,
    fx_leaf,
    hidden_width,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register

__all__ = ["MSCAM", "AttentionalFeatureFusion"]


@fx_leaf
def check_same_pair(x: torch.Tensor, y: torch.Tensor, owner: str) -> torch.Tensor:
    """``y`` must have exactly the shape of ``x`` (AFF fuses two maps of one shape)."""
    if tracing.is_tracing():
        return y
    if not isinstance(y, torch.Tensor) or y.dim() != 4:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{owner}: expected a second map of the first one's shape {tuple(x.shape)}, got {got}")
    if tuple(y.shape) != tuple(x.shape):
        raise ValueError(
            f"{owner}: expected both maps of one shape (resize the context first), got x {tuple(x.shape)} and "
            f"y {tuple(y.shape)}"
        )
    return y


def _bn(bn: nn.BatchNorm2d, t: torch.Tensor) -> torch.Tensor:
    """BatchNorm; on a pooled B×C×1×1 map in training with batch 1 (one value per channel) it uses the running
    statistics instead of failing (and leaves them unchanged)."""
    if bn.training and t.shape[0] * t.shape[2] * t.shape[3] == 1:
        return F.batch_norm(t, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(t)


class MSCAM(nn.Module):
    """Multi-scale channel attention module: ``σ(L(X) + G(X))`` with ``L`` = Conv1×1 → BN → ReLU → Conv1×1 → BN
    at every pixel and ``G`` the same on the global average pool (convs with bias, as the official code)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.local_conv1 = nn.Conv2d(channels, hidden, 1)
        self.local_bn1 = PooledBatchNorm2d(hidden)
        self.local_conv2 = nn.Conv2d(hidden, channels, 1)
        self.local_bn2 = PooledBatchNorm2d(channels)
        self.global_conv1 = nn.Conv2d(channels, hidden, 1)
        self.global_bn1 = PooledBatchNorm2d(hidden)
        self.global_conv2 = nn.Conv2d(hidden, channels, 1)
        self.global_bn2 = PooledBatchNorm2d(channels)

    def local_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_bn2(self.local_conv2(F.relu(self.local_bn1(self.local_conv1(x)))))

    def global_branch(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean((2, 3), keepdim=True)
        return _bn(self.global_bn2, self.global_conv2(F.relu(_bn(self.global_bn1, self.global_conv1(g)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.local_branch(x) + self.global_branch(x))


@register(
    "aff",
    family="fusion",
    paper="Attentional Feature Fusion (Dai, Gieseke, Oehmcke, Wu, Barnard; WACV 2021)",
    url="https://arxiv.org/abs/2009.14082",
    layout="pair_same",
    complexity="O(N)",
    summary="Fuses two same-shape maps as x·M + y·(1−M) with M = MS-CAM(x + y) (local + global channel "
    "attention); iterative=True is iAFF.",
    test_kwargs={"reduction": 2},
    maps=("weights",),
)
class AttentionalFeatureFusion(AttnModule):
    """AFF / iAFF (Dai et al., WACV 2021): ``forward(x, y)``, both B×C×H×W of one shape → B×C×H×W.

    AFF: ``M = MS-CAM(x + y)``, ``Z = x ⊙ M + y ⊙ (1 − M)``.  iAFF (``iterative=True``): the initial
    integration ``x + y`` is itself an AFF: ``X' = x ⊙ M₁ + y ⊙ (1 − M₁)`` with ``M₁ = MS-CAM₁(x + y)``, then
    ``Z = x ⊙ M₂ + y ⊙ (1 − M₂)`` with ``M₂ = MS-CAM₂(X')``.  MS-CAM: ``σ(L(X) + G(X))``, bottleneck
    C/r (r = ``reduction``, 4) with BN (see :class:`MSCAM`).  With batch 1 in training the global branch's BN
    (one value per channel) uses its running statistics.

    ``variant="official"`` reproduces YimianDai/open-aff (``aff_pytorch/aff_net/fusion.py``): AFF returns
    ``2·x ⊙ M + 2·y ⊙ (1 − M)``, and iAFF's second step reuses the first global branch (its
    ``global_att2`` is never used).  See docs/provenance/aff.md.

    Args:
        channels: channels C of both maps.
        reduction: bottleneck ratio r (hidden = C // r, at least 1).
        iterative: iAFF.
        hidden_channels: explicit bottleneck width (overrides ``reduction``).
        variant: ``"paper"`` or ``"official"``.

    Captured map: ``"weights"`` B×C×H×W, the (last) fusion weight M.
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 4,
        iterative: bool = False,
        hidden_channels: int | None = None,
        variant: str = "paper",
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, 1, self.owner)
        self.channels = channels
        self.reduction = reduction
        check_arg(isinstance(iterative, bool), self.owner, "iterative", "a bool", iterative)
        self.iterative = iterative
        self.variant = check_choice(variant, ("paper", "official"), self.owner, "variant")
        self.hidden_channels = hidden
        self.attn = MSCAM(channels, hidden)
        self.attn2 = MSCAM(channels, hidden) if iterative else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        y = check_same_pair(x, y, self.owner)
        m = self.attn(x + y)
        if self.attn2 is not None:
            xi = y + (x - y) * m
            if self.variant == "official":  # open-aff's iAFF: second local branch, first global branch
                m = torch.sigmoid(self.attn2.local_branch(xi) + self.attn.global_branch(xi))
            else:
                m = self.attn2(xi)
        record(self, "weights", m)
        out = y + (x - y) * m  # = x·M + y·(1 − M)
        if self.variant == "official" and self.attn2 is None:
            out = 2 * out
        return out
