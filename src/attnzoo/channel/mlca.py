"""MLCA: Mixed local channel attention for object detection (Wan, Lu, Shen, Xu, Lang, Ren; Eng. Appl. Artif. Intell.
123, 2023, 106442).  Paper: https://doi.org/10.1016/j.engappai.2023.106442

Written from the paper and attnzoo's reference notes; the official code (wandahangFY/MLCA) is GPL-3.0 and was not
read or copied (docs/provenance/mlca.md).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..functional.pooling import EXACT_POOL_FORM, adaptive_pool2d
from ..layers import KERNEL_BOUND, Gate, SizeBound, check_arg, positive_int, positive_number, traced_size
from ..registry import register
from .eca import eca_kernel_size

__all__ = ["MixedLocalChannelAttention", "mlca_kernel_size"]


def mlca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """MLCA's 1-D kernel: ``t = int(|log2 C + b| / γ)``, made odd (``t + 1`` when even); ECA's ψ(C) without
    attnzoo's floor of 3 (C = 4 → 1, 16 → 3, 64 → 3, 256 → 5)."""
    return eca_kernel_size(channels, gamma, beta, minimum=1)


def _conv1d_same(seq: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The zero-padded k-tap cross-correlation of B×1×L sequences (``Conv1d(1, 1, k, padding=k//2, bias=False)``)."""
    return F.conv1d(seq, weight, padding=(weight.shape[-1] - 1) // 2)


@register(
    "mlca",
    family="channel",
    paper="Mixed local channel attention for object detection (Wan et al.; Eng. Appl. Artif. Intell. 2023)",
    url="https://doi.org/10.1016/j.engappai.2023.106442",
    complexity="O(N)",
    summary="Mixed local channel attention: 5×5 local average pooling and its global mean, ECA-style 1-D convs "
    "over channels (local: over the position-major sequence), mixed with λ = 0.5, exactly unpooled to H×W.",
    maps=("gate",),
    forms=(EXACT_POOL_FORM,),
)
class MixedLocalChannelAttention(Gate):
    """MLCA gate; B×C×H×W → B×C×H×W.

    ``L = AdaptiveAvgPool_{s×s}(x)`` (s = ``local_size``, 5), ``G = mean(L)`` (the mean of the s² bins);
    ``a_G = σ(Conv1d_k(G))`` over the channels; ``a_L = σ(Conv1d'_k(L))`` over the position-major sequence of L
    (C channels of cell 1, then of cell 2, ...: the kernel crosses cell boundaries, as the official code);
    ``att = unpool_{H×W}((1 − λ)·a_G + λ·a_L)`` with λ = ``local_weight``; ``y = x ⊙ att``.  The kernel k is
    ECA's ψ(C) made odd (:func:`mlca_kernel_size`); both convs have no bias.

    "Unpool" is adaptive average pooling from s×s to H×W (the official computation): at integer ratios it
    repeats every cell, elsewhere a pixel whose bin straddles two cells averages them.  Both poolings are
    PyTorch's exact adaptive bins in every runtime (:func:`attnzoo.functional.adaptive_pool2d`): the copies'
    non-factor adaptive pools fail ONNX export at most sizes.  Maps smaller than s×s are pooled up and the gate
    pooled back down, as PyTorch does.  With λ = 0 and H, W multiples of s, MLCA is ECA with kernel k.

    Args:
        channels: input channels C.
        local_size: side s of the local pooling grid (5).
        local_weight: λ, the local branch's weight (0.5).
        gamma, beta: the constants of the kernel rule.

    Captured map: ``"gate"`` B×C×H×W.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "local_size": SizeBound(KERNEL_BOUND, "local pooled side"),
    }

    def __init__(
        self,
        channels: int,
        local_size: int = 5,
        local_weight: float = 0.5,
        gamma: float = 2.0,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels = positive_int(channels, owner, "channels")
        self.local_size = positive_int(local_size, owner, "local_size")
        ok = isinstance(local_weight, (int, float)) and not isinstance(local_weight, bool) and 0 <= local_weight <= 1
        check_arg(ok, owner, "local_weight", "a number in [0, 1]", local_weight)
        self.local_weight = float(local_weight)
        positive_number(gamma, owner, "gamma")
        finite = isinstance(beta, (int, float)) and not isinstance(beta, bool) and math.isfinite(beta)
        check_arg(finite, owner, "beta", "a finite number", beta)
        self.kernel_size = mlca_kernel_size(channels, gamma, beta)
        check_arg(self.kernel_size >= 1, owner, "gamma, beta", "constants giving a kernel of at least 1", (gamma, beta))
        k = self.kernel_size
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)  # global branch
        self.conv_local = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×H×W."""
        b, c = x.shape[0], self.channels
        s = self.local_size
        local = adaptive_pool2d(x, s, "avg")  # B×C×s×s
        glob = local.mean((2, 3))  # B×C: the mean of the s² bins
        a_g = torch.sigmoid(_conv1d_same(glob.unsqueeze(1), self.conv.weight)).view(b, c, 1, 1)
        seq = local.permute(0, 2, 3, 1).reshape(b, 1, s * s * c)  # position-major: C channels per cell
        a_l = torch.sigmoid(_conv1d_same(seq, self.conv_local.weight)).view(b, s, s, c).permute(0, 3, 1, 2)
        lam = self.local_weight
        att = a_g * (1.0 - lam) + a_l * lam  # B×C×s×s
        return adaptive_pool2d(att, traced_size(x), "avg")
