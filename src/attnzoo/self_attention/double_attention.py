"""A²-Nets: Double Attention Networks (Chen, Kalantidis, Li, Yan, Feng; NeurIPS 2018).

Paper: https://arxiv.org/abs/1810.11579 (no official code).
"""

from __future__ import annotations

import torch
from torch import nn

from ..capture import capture_target, record
from ..layers import AttnModule, check_nchw, fx_leaf, inplace_ok, positive_int
from ..registry import register

__all__ = ["DoubleAttention"]


@register(
    "double_attention",
    family="self_attention",
    paper="A²-Nets: Double Attention Networks (Chen et al.; NeurIPS 2018)",
    url="https://arxiv.org/abs/1810.11579",
    complexity="O(N)",
    summary="Gather c_n global descriptors (softmax over positions), distribute them back (softmax over descriptors); 1×1 conv + residual.",
    maps=("gather", "distribute"),
)
class DoubleAttention(AttnModule):
    """Double attention block (A²); B×C×H×W → B×C×H×W.

    With A = φ(x) (c_m feature maps), B = θ(x) and V = ρ(x) (c_n maps each, all 1×1 convs with bias):
    gather ``G = A · softmax_N(B)ᵀ`` (c_m × c_n global descriptors, each attention map normalised over the N
    positions), distribute ``Z_i = G · softmax_{c_n}(V_i)`` (each position picks a mixture of descriptors), then
    ``y = x + conv1×1(Z)`` (c_m → C, the paper's expansion and residual).  Cost O(N·(c_m + c_n)·C).  The three
    input convs are one fused 1×1 conv (``proj``: A rows, B rows, V rows).

    Args:
        channels: C.
        c_m: feature / descriptor width (default C // 4, at least 1).
        c_n: number of descriptors (default C // 4, at least 1).

    Captured maps: ``"gather"`` B×c_n×H×W (softmax over positions), ``"distribute"`` B×c_n×H×W (softmax over
    descriptors).  Differences from community copies: see docs/provenance/double_attention.md.
    """

    def __init__(self, channels: int, c_m: int | None = None, c_n: int | None = None) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        self.channels = channels
        self.c_m = max(channels // 4, 1) if c_m is None else positive_int(c_m, owner, "c_m")
        self.c_n = max(channels // 4, 1) if c_n is None else positive_int(c_n, owner, "c_n")
        self.proj = nn.Conv2d(channels, self.c_m + 2 * self.c_n, 1)
        self.out = nn.Conv2d(self.c_m, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        return _double_attention(x, self.proj, self.out, self.c_m, self.c_n, capture_target(self))

    def extra_repr(self) -> str:
        return f"{self.channels}, c_m={self.c_m}, c_n={self.c_n}"


@fx_leaf
def _double_attention(
    x: torch.Tensor, proj: nn.Module, out: nn.Module, cm: int, cn: int, owner: nn.Module | None
) -> torch.Tensor:
    h, w = x.shape[2], x.shape[3]
    y = proj(x).flatten(2)  # B×(c_m+2c_n)×N
    a, bm, v = y[:, :cm], y[:, cm : cm + cn], y[:, cm + cn :]
    acc = torch.promote_types(y.dtype, torch.float32)
    gather = bm.to(acc).softmax(-1).to(y.dtype)  # attention maps: softmax over positions
    dist = v.to(acc).softmax(1).to(y.dtype)  # attention vectors: softmax over the c_n descriptors
    record(owner, "gather", gather.unflatten(2, (h, w)))
    record(owner, "distribute", dist.unflatten(2, (h, w)))
    g = a @ gather.transpose(1, 2)  # B×c_m×c_n global descriptors
    z = (g @ dist).unflatten(2, (h, w))  # B×c_m×H×W
    del y, a, bm, v, gather, dist  # inference frees them before the expansion conv (autograd keeps what it needs)
    y = out(z)
    return y.add_(x) if inplace_ok() else x + y
