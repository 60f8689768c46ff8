"""Compact Generalized Non-local Network (Yue et al.; NeurIPS 2018).  Paper: https://arxiv.org/abs/1810.13125"""

from __future__ import annotations

import math

import torch
import torch.fx
import torch.nn as nn

from ..capture import record
from ..layers import (
    AttnModule,
    check_arg,
    check_nchw,
    conv1x1,
    hidden_width,
    positive_int,
    renamed_args,
)
from ..layers.checks import check_choice
from ..registry import register

__all__ = ["CompactGeneralizedNonLocal"]


CGNL_KERNELS = ("dot", "gaussian")


@register(
    "cgnl",
    family="self_attention",
    paper="Compact Generalized Non-local Network (Yue, Sun, Yuan, Zhou, Ding, Xu; NeurIPS 2018)",
    url="https://arxiv.org/abs/1810.13125",
    complexity="O(N)",
    summary="CGNL: one attention scalar per channel group from ⟨φ, g⟩ over all positions and channels; GN zero-init.",
    identity_at_init=True,
    maps=("attn",),
)
class CompactGeneralizedNonLocal(AttnModule):
    """Compact Generalized Non-local block (Yue et al., NeurIPS 2018); B×C×H×W → B×C×H×W.

    As the official ``SpatialCGNL`` / ``SpatialCGNLx``: θ, φ, g are 1×1 convs C → planes (C/2, no bias),
    split into G groups of c' = planes/G channels.  Within a group every position of every channel is one
    entry of a c'·H·W vector, and the kernel factorises, so the (c'N)×(c'N) affinity collapses to scalars:

    - ``kernel_type="dot"``: ``y = ⟨φ, g⟩ · θ`` — one scalar per group and sample;
    - ``kernel_type="gaussian"``: the order-P Taylor expansion of ``exp(−γ‖θ−φ‖²)`` with the official
      simplification β = exp(−2γ): ``y = Σ_{p=0}^{P} α_p² ⟨φ^p, g⟩ θ^p``, ``α_p² = β (2γ)^p / p!`` — P+1
      scalars per group and sample.

    ``use_scale`` divides the scalars by √(c'·H·W).  Then a grouped 1×1 conv planes → C (G groups, no bias)
    and GroupNorm(G, C) whose weight and bias start at 0: ``z = x + GN(W_z y)`` is the identity at init.  Convs
    ~ N(0, 0.01) as the official one-block initialisation.  Community versions often use a softmax over
    positions (that is NL), BatchNorm, no grouped output conv, or per-channel scalars; the official Taylor
    kernel calls ``.cuda()`` (CPU unsafe) — none of that here.

    Args:
        channels: input channels C.
        inner_channels: width of θ, φ, g (formerly ``planes``) (default ``max(1, C // 2)``); divisible by ``groups``.
        groups: G; divides ``planes`` and C.
        kernel_type: ``"dot"`` or ``"gaussian"`` (Taylor-expanded RBF; formerly ``kernel``).
        order: Taylor order P of the Gaussian kernel (3 in the released models).
        gamma: γ of the Gaussian kernel (1e-4 official).
        use_scale: divide the scalars by √(c'·H·W) (off in the official models).

    Attention maps: ``"attn"``, B×G (dot) or B×G×(P+1) (gaussian): the per-group scalars.
    """

    @renamed_args(planes="inner_channels", kernel="kernel_type")
    def __init__(
        self,
        channels: int,
        inner_channels: int | None = None,
        groups: int = 8,
        kernel_type: str = "dot",
        order: int = 3,
        gamma: float = 1e-4,
        use_scale: bool = False,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        planes = hidden_width(channels, 2, inner_channels, 0, owner, "inner_channels")
        positive_int(groups, owner, "groups")
        check_arg(planes % groups == 0, owner, "groups", f"a divisor of planes={planes}", groups)
        check_arg(channels % groups == 0, owner, "groups", f"a divisor of channels={channels}", groups)
        check_choice(kernel_type, CGNL_KERNELS, owner, "kernel_type")
        check_arg(
            isinstance(order, int) and not isinstance(order, bool) and order >= 0,
            owner,
            "order",
            "a non-negative integer",
            order,
        )
        check_arg(isinstance(gamma, (int, float)) and gamma > 0, owner, "gamma", "a positive number", gamma)
        self.channels, self.planes, self.groups = channels, planes, groups
        self.kernel_type, self.order, self.gamma, self.use_scale = kernel_type, order, float(gamma), bool(use_scale)
        self.t = conv1x1(channels, planes, False, 0.01)
        self.p = conv1x1(channels, planes, False, 0.01)
        self.g = conv1x1(channels, planes, False, 0.01)
        self.z = conv1x1(planes, channels, False, 0.01, groups=groups)
        self.gn = nn.GroupNorm(groups, channels)
        nn.init.zeros_(self.gn.weight)
        nn.init.zeros_(self.gn.bias)
        beta = math.exp(-2 * self.gamma)
        #: α_p² of the Taylor terms (the official α_p = sqrt(β (2γ)^p / p!)).
        self.taylor = tuple(beta * (2 * self.gamma) ** p / math.factorial(p) for p in range(order + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        t = self.t(x).reshape(b, self.groups, -1)  # B×G×(c'·N)
        p = self.p(x).reshape(b, self.groups, -1)
        g = self.g(x).reshape(b, self.groups, -1)
        norm = t.shape[2] ** -0.5 if self.use_scale else 1.0
        if self.kernel_type == "dot":
            att = (p * g).sum(-1) * norm  # B×G: one scalar per group and sample
            record(self, "attn", att)
            y = t * att.unsqueeze(-1)
        else:
            atts = [g.sum(-1) * (norm * self.taylor[0])]  # p^0 = 1
            y = atts[0].unsqueeze(-1).expand_as(t)  # θ^0 = 1
            for k in range(1, self.order + 1):
                atts.append((p.pow(k) * g).sum(-1) * (norm * self.taylor[k]))
                y = y + atts[k].unsqueeze(-1) * t.pow(k)
            record(self, "attn", torch.stack(atts, -1))
        y = y.reshape(b, self.planes, h, w)
        return x + self.gn(self.z(y))
