"""ECA-Net: Efficient Channel Attention (Wang et al.; CVPR 2020).  Paper: https://arxiv.org/abs/1910.03151"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..functional.gating import SPATIAL_MEAN_FORM, spatial_mean
from ..layers import Gate, check_arg, odd_kernel, positive_int, positive_number
from ..registry import register

__all__ = ["EfficientChannelAttention", "eca_kernel_size"]


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0, minimum: int = 3) -> int:
    """ECA-Net's adaptive kernel ψ(C) = |log2(C)/γ + b/γ|_odd, at least ``minimum`` (3: the rounding of timm's
    ``EcaModule``; MLCA takes 1).

    C = 64, 256, 512, 2048 → 3, 5, 5, 7.
    """
    t = int(abs(math.log2(channels) + beta) / gamma)
    return max(t if t % 2 else t + 1, minimum)


@register(
    "eca",
    family="channel",
    paper="ECA-Net: Efficient Channel Attention for Deep CNNs (Wang et al.; CVPR 2020)",
    url="https://arxiv.org/abs/1910.03151",
    complexity="O(N)",
    summary="Global average pool → 1-D conv across channels (adaptive kernel) → sigmoid gate.",
    maps=("gate",),
    forms=(SPATIAL_MEAN_FORM,),
)
class EfficientChannelAttention(Gate):
    """ECA gate: local cross-channel interaction without dimensionality reduction; B×C×H×W → B×C×H×W.

    ``y = x * sigmoid(Conv1d_k(GAP(x)))`` over the channel axis (zero padded).  ``kernel_size=None`` uses the
    adaptive ψ(C) with γ=2, b=1 (odd, ≥ 3); the conv has no bias, as the official ``eca_layer``.

    Args:
        channels: input channels C.
        kernel_size: odd 1-D kernel size, or ``None`` for ψ(C).
        gamma, beta: the constants of ψ.

    Captured map: ``"gate"`` B×C×1×1.
    """

    def __init__(self, channels: int, kernel_size: int | None = None, gamma: float = 2.0, beta: float = 1.0) -> None:
        super().__init__()
        positive_int(channels, self.owner, "channels")
        if kernel_size is None:
            positive_number(gamma, self.owner, "gamma")
            finite = isinstance(beta, (int, float)) and not isinstance(beta, bool) and math.isfinite(beta)
            check_arg(finite, self.owner, "beta", "a finite number", beta)
            kernel_size = eca_kernel_size(channels, gamma, beta)
        odd_kernel(kernel_size, self.owner)
        self.channels = channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1."""
        k = self.kernel_size
        p = (k - 1) // 2
        # The k-tap cross-correlation over the channel axis (zero padded), from k shifted views of the padded B×C
        # vector: the values of F.conv1d(s, weight, padding=p) without a oneDNN convolution
        # call, whose fixed cost (and thread start-up) dwarfs a B×C input (fwd+bwd 2.6× faster on one thread,
        # 70× on two loaded threads).
        # The k shifted views stacked (B×C×k, tiny) times the k taps: one small matmul, counted as the conv's
        # 2·B·C·k FLOPs.  Slices, not Tensor.unfold: the legacy TorchScript ONNX exporter (Ultralytics' export)
        # cannot size an unfold.
        s = F.pad(spatial_mean(x), (p, p))
        c = self.channels
        y = torch.stack([s[:, i : i + c] for i in range(k)], dim=-1) @ self.conv.weight.view(k)
        return torch.sigmoid(y)[:, :, None, None]
