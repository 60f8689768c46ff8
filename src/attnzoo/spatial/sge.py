"""Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks (Li, Hu, Yang; 2019).

Paper: https://arxiv.org/abs/1905.09646
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..capture import is_capturing, record
from ..layers import AttnModule, check_arg, check_nchw, group_norm_groups, positive_int, spread_count
from ..registry import register
from ..tracing import eager_only

__all__ = ["SpatialGroupEnhance"]


@register(
    "sge",
    family="spatial",
    paper="Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks (Li, Hu, Yang; 2019)",
    url="https://arxiv.org/abs/1905.09646",
    complexity="O(N)",
    summary="Per group: similarity of each position to the group's mean feature, normalised over space, scaled, sigmoid gate.",
    maps=("gate",),
)
class SpatialGroupEnhance(AttnModule):
    """Spatial Group-wise Enhance; B×C×H×W → B×C×H×W.

    C is split into G groups of C/G; per group ``c_i = g · x_i`` with g = GAP(x) of the group (a dot product over
    its channels), ``ĉ = (c − mean c) / (std c + 1e-5)`` over the H·W positions (unbiased std as the official
    code; 0 on a 1×1 map, where the official divides 0 by NaN), ``a = σ(w·ĉ + b)`` and ``y = x ⊙ a``.  Official
    init ``w = 0``, ``b = 1`` (so the gate starts at σ(1) everywhere); parameters named as the official.  The
    group similarity is one batched matrix product.  See docs/provenance/sge.md.

    Args:
        channels: input channels C.
        groups: G, a divisor of C; ``None`` → the official 64 when it divides C, else the largest divisor ≤ 64.

    Captured map: ``"gate"`` B×G×H×W.
    """

    def __init__(self, channels: int, groups: int | None = None) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        if groups is None:
            groups = group_norm_groups(channels, 64)
        positive_int(groups, self.owner, "groups")
        check_arg(channels % groups == 0, self.owner, "groups", f"a divisor of channels={channels}", groups)
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, c, h, w = x.shape
        if torch.is_grad_enabled() and eager_only(x) and not is_capturing(self):
            # the same values with a backward that keeps no full-size intermediate (recomputed instead)
            return _SGEFunction.apply(x, self.weight, self.bias, self.groups)
        gate = _sge_gate(x.reshape(b, self.groups, c // self.groups, h * w), self.weight, self.bias)
        record(self, "gate", gate.view(b, self.groups, h, w))
        return (x.reshape(gate.shape[0], self.groups, c // self.groups, h * w) * gate).view(b, c, h, w)


def _sge_gate(xg: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """σ(w·ĉ + b) (B×G×1×HW) for the grouped input xg: B×G×(C/G)×HW."""
    b, g, _, hw = xg.shape
    sim = torch.matmul(xg.mean(3, keepdim=True).transpose(2, 3), xg).squeeze(2)  # (B, G, HW)
    t = sim.to(weight.dtype)  # the parameters' precision (float32 under autocast: sums of squares)
    t = t - t.mean(2, keepdim=True)
    var = t.square().sum(2, keepdim=True) / spread_count(t, (2,))
    # √ has an infinite slope at 0 (a 1×1 or constant map): clamping at 1e-30 keeps backward finite and is exact
    # wherever the spread is not (numerically) zero
    std = torch.sqrt(var.clamp(min=1e-30)) + 1e-5
    t = t / std * weight.view(1, g, 1) + bias.view(1, g, 1)
    return torch.sigmoid(t).to(xg.dtype).view(b, g, 1, hw)


class _SGEFunction(torch.autograd.Function):
    """``x ⊙ σ(w·ĉ + b)`` with a lean backward: only x and the parameters are saved (the normalised similarity
    and the gate are recomputed, one B×G×HW map each), and the input gradient is accumulated in place into one
    buffer.  Autograd's own backward keeps three full-size maps (centred similarity, normalised similarity,
    gate) and materialises the gradient of each product and mean.  Same forward values as the plain path."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
        b, c, h, w = x.shape
        xg = x.reshape(b, groups, c // groups, h * w)
        gate = _sge_gate(xg, weight, bias)
        ctx.save_for_backward(x, weight, bias)
        ctx.groups = groups
        return (xg * gate).view(b, c, h, w)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, bias = ctx.saved_tensors
        dy = dy.contiguous()  # a broadcast gradient makes the products below slow strided loops
        g = ctx.groups
        b, c, h, w = x.shape
        n_pos = h * w
        xg = x.reshape(b, g, c // g, n_pos)
        dyg = dy.reshape(b, g, c // g, n_pos)
        # recompute the forward's small chain (same ops as _sge_gate)
        m = xg.mean(3, keepdim=True)  # B×G×(C/G)×1
        t = torch.matmul(m.transpose(2, 3), xg).squeeze(2).to(weight.dtype)
        t.sub_(t.mean(2, keepdim=True))  # centred similarity
        count = spread_count(t, (2,))
        var = t.square().sum(2, keepdim=True) / count
        live = var >= 1e-30  # where the clamp passes the gradient
        root = torch.sqrt(var.clamp(min=1e-30))
        std = root + 1e-5
        wv, bv = weight.view(1, g, 1), bias.view(1, g, 1)
        t.div_(std)  # normalised similarity n
        gate = torch.sigmoid(t * wv + bv).to(x.dtype)  # B×G×HW
        # gate gradient, then through the sigmoid: dz = Σ_c dy·x · σ(1 − σ)
        dz = (dyg * xg).sum(2)
        dx = (dyg * gate.unsqueeze(2)) if ctx.needs_input_grad[0] else None
        dz = dz.to(weight.dtype).mul_(gate).mul_(1 - gate)
        dw = (dz * t).sum((0, 2)).view_as(weight) if ctx.needs_input_grad[1] else None
        db = dz.sum((0, 2)).view_as(bias) if ctx.needs_input_grad[2] else None
        if dx is None:
            return None, dw, db, None
        dn = dz.mul_(wv)
        # n = t / std with std = √var + ε, var = Σ t² / count: ∂std/∂t_j = t_j / (count · √var) (0 where the
        # clamp holds), so dt = dn / std − n · Σ(dn·n) / (count · √var)
        k = (dn * t).sum(2, keepdim=True) / (count * root) * live
        dt = dn.div_(std).sub_(t.mul_(k))
        dt.sub_(dt.mean(2, keepdim=True))  # through the centring
        ds = dt.to(x.dtype).unsqueeze(2)  # B×G×1×HW
        # sim = Σ_c m_c x_c: ∂/∂x_c = ds·m_c, ∂/∂m_c = Σ_hw ds·x_c, and m_c = mean_hw x_c
        dm = torch.matmul(xg, ds.transpose(2, 3))  # B×G×(C/G)×1
        dx.addcmul_(m, ds).add_(dm / n_pos)
        return dx.view(b, c, h, w), dw, db, None
