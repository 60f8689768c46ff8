"""Non-deep Networks (Goyal, Bochkovskiy, Deng, Koltun; NeurIPS 2022): ParNet's skip-squeeze-excitation (SSE).

Paper: https://arxiv.org/abs/2110.07641
"""

from __future__ import annotations

import torch

from ..capture import record
from ..functional.gating import SPATIAL_MEAN_FORM
from ..layers import PooledBatchNorm2d, check_nchw, inplace_ok
from ..registry import register
from .ese import EffectiveSqueezeExcite

__all__ = ["ParNetSSE"]


@register(
    "parnet_sse",
    family="channel",
    paper="Non-deep Networks (Goyal, Bochkovskiy, Deng, Koltun; NeurIPS 2022)",
    url="https://arxiv.org/abs/2110.07641",
    complexity="O(N)",
    summary="ParNet's skip-squeeze-excitation: BN, then global average pool → one C→C 1×1 conv → sigmoid gate.",
    maps=("gate",),
    forms=(SPATIAL_MEAN_FORM,),
)
class ParNetSSE(EffectiveSqueezeExcite):
    """ParNet skip-squeeze-excitation; B×C×H×W → B×C×H×W.

    ``u = BN(x)``, ``y = u ⊙ σ(W GAP(u) + b)`` with one C×C 1×1 conv (with bias): no reduction, because the
    SSE sits on the skip branch of a shallow block, where the paper keeps the gate wide.  In ParNet's RepVGG-style
    block it is the third branch next to the 1×1-conv+BN and 3×3-conv+BN branches, summed and passed through
    SiLU; this module is the SSE branch alone (it returns the gated ``BN(x)``, not ``x``).  The common copy
    (External-Attention's ``ParNetAttention``) leaves the BN out and gates ``x``.  See docs/provenance/parnet_sse.md.

    The BN is a batch-1-safe ``BatchNorm2d`` (PyTorch's defaults): in training on one value per channel (batch 1,
    1×1 map) it uses its running statistics.

    Args:
        channels: input channels C.

    Captured map: ``"gate"`` B×C×1×1.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, gate="sigmoid")
        self.bn = PooledBatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.bn(check_nchw(x, self.channels, self.owner))
        gate = self.gate_map(u)
        record(self, "gate", gate)
        return u.mul_(gate) if inplace_ok() else u * gate  # u is this module's own BN output
