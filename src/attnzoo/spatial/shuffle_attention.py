"""SA-Net: Shuffle Attention for Deep Convolutional Neural Networks (Zhang, Yang; ICASSP 2021).

Paper: https://arxiv.org/abs/2102.00240
"""

from __future__ import annotations

import torch
from torch import nn

from .. import tracing
from ..capture import is_capturing, record
from ..layers import AttnModule, check_arg, check_nchw, inplace_ok, positive_int
from ..registry import register

__all__ = ["ShuffleAttention"]


def default_groups(channels: int, max_groups: int = 64) -> int | None:
    """The official 64 groups when 2·64 divides C, else the largest g ≤ 64 with 2g dividing C (None if C is odd)."""
    fits = [g for g in range(1, max_groups + 1) if channels % (2 * g) == 0]
    return fits[-1] if fits else None


@register(
    "shuffle_attention",
    family="spatial",
    paper="SA-Net: Shuffle Attention for Deep Convolutional Neural Networks (Zhang, Yang; ICASSP 2021)",
    url="https://arxiv.org/abs/2102.00240",
    complexity="O(N)",
    summary="Grouped half-channel (GAP) and half-spatial (GroupNorm) gates, then a 2-group channel shuffle.",
    maps=("gate",),
)
class ShuffleAttention(AttnModule):
    """Shuffle attention; B×C×H×W → B×C×H×W.

    C is split into G groups, each group into two halves of C/(2G) channels: the channel half is gated by
    ``σ(c_w · GAP(x) + c_b)``, the spatial half by ``σ(s_w · GN(x) + s_b)`` (GroupNorm with one channel per
    group); the gated map is then channel-shuffled with 2 groups.  Official parameters and init
    (``cweight = sweight = 0``, ``cbias = sbias = 1``), named as the official ``sa_layer``.  Both halves are one
    one per-channel GroupNorm of x (weight 0 on the channel half, plus its pooled logit), then one sigmoid.  See
    docs/provenance/shuffle_attention.md.

    Args:
        channels: input channels C (even).
        groups: G; ``None`` → 64 as the official when 2·64 divides C, else the largest G ≤ 64 with 2G | C.

    Captured map: ``"gate"`` B×C×H×W (before the shuffle, in the input's channel order).
    """

    def __init__(self, channels: int, groups: int | None = None) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        if groups is None:
            groups = default_groups(channels)
            check_arg(groups is not None, self.owner, "channels", "even (two halves per group)", channels)
        groups = positive_int(groups, self.owner, "groups")
        check_arg(
            channels % (2 * groups) == 0, self.owner, "groups", f"a g with 2·g dividing channels={channels}", groups
        )
        self.groups = groups
        half = channels // (2 * groups)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, c, h, w = x.shape
        g, half = self.groups, self.channels // (2 * self.groups)
        # Spatial half: σ(sw·(γ(x − μ)/σ + β) + sb) is a GroupNorm (one channel per group) with weight sw·γ and
        # bias sw·β + sb.  Channel half: σ(cw·μ + cb), a per-sample constant: GroupNorm weight and bias 0, plus
        # that logit.  One GroupNorm over all C channels, one add, one sigmoid.
        # Under autograd the halves apart (eager, FX, torch.compile, torch.export); a graph recorded for a runtime
        # keeps the one-GroupNorm form in both grad modes.
        if torch.is_grad_enabled() and not tracing.for_runtime() and not is_capturing(self):
            return self._train_forward(x)
        zero = torch.zeros_like(self.cweight.view(half))
        weight = torch.stack([zero, self.sweight.view(half) * self.gn.weight], 0).expand(g, 2, half).reshape(c)
        bias = torch.stack([zero, self.sweight.view(half) * self.gn.bias + self.sbias.view(half)], 0)
        bias = bias.expand(g, 2, half).reshape(c)
        mu = x.view(b, g, 2, half, h * w)[:, :, 0].mean(3)  # (B, G, half): the channel half's GAP
        logit_c = mu * self.cweight.view(half) + self.cbias.view(half)
        off = torch.stack([logit_c, torch.zeros_like(logit_c)], 2).view(b, c, 1, 1)
        t = torch.group_norm(x, self.channels, weight, bias, self.gn.eps).add_(off).sigmoid_()
        record(self, "gate", t)
        # Gate, then the channel shuffle with 2 groups: output channel 2m + k is gated channel k·C/2 + m.
        shuffled = (b, 2, c // 2, h * w)
        if inplace_ok() and not is_capturing(self) and tracing.eager_only(x):
            # Eager, no autograd: write the product straight into the shuffled order (one buffer, one pass).
            out = torch.empty((b, c // 2, 2, h * w), dtype=t.dtype, device=t.device)
            torch.mul(t.reshape(shuffled).transpose(1, 2), x.reshape(shuffled).transpose(1, 2), out=out)
            return out.view(b, c, h, w)
        return (x * t).reshape(shuffled).transpose(1, 2).reshape(b, c, h, w)

    def _train_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same values under autograd with the halves apart, as the paper: a GroupNorm of the spatial half only
        and a B×C/2 gate for the channel half (the one GroupNorm over all C of :meth:`forward` costs a full-size
        normalisation backward and a full-size sigmoid backward for the channel half: 1.1–1.4× the peer's
        fwd+bwd time)."""
        b, c, h, w = x.shape
        g, half = self.groups, self.channels // (2 * self.groups)
        xv = x.reshape(b * g, 2 * half, h, w)
        x0, x1 = xv[:, :half], xv[:, half:]
        s_c = torch.sigmoid(x0.mean((2, 3), keepdim=True) * self.cweight + self.cbias)
        weight = self.sweight.view(half) * self.gn.weight
        bias = self.sweight.view(half) * self.gn.bias + self.sbias.view(half)
        s_s = torch.sigmoid(torch.group_norm(x1, half, weight, bias, self.gn.eps))
        gated = torch.cat([x0 * s_c, x1 * s_s], 1)
        return gated.view(b, 2, c // 2, h * w).transpose(1, 2).reshape(b, c, h, w)
